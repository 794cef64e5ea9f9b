"""The FastAPI application: routers, middleware and error handlers, assembled in one place."""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from billing import health
from billing.body_limit import BodyLimitMiddleware
from billing.endpoints.routes import install_endpoints
from billing.errors import install_error_handlers
from billing.logs import configure_logging
from billing.manage.routes import router as manage_router
from billing.metrics.routes import router as metrics_router
from billing.pledges.routes import router as pledges_router
from billing.reports import install_reports
from billing.settings import get_settings
from billing.statements.routes import manage_router as statements_manage_router
from billing.statements.routes import reports_router as statements_reports_router
from billing.upgrades.routes import router as upgrades_router
from billing.widget.routes import install_widget
from webhooks.routes import MAX_WEBHOOK_BYTES, WEBHOOK_PATH, inbox_pool_lifespan
from webhooks.routes import router as webhooks_router


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging()
    app = FastAPI(
        title="Reader Pledges",
        version="0.1.0",
        description="Reader-revenue backend: pledges on Stripe, webhooks, receipts, reports.",
        lifespan=inbox_pool_lifespan,
    )
    app.include_router(health.router)
    app.include_router(pledges_router)
    install_reports(app)
    install_endpoints(app)
    app.include_router(statements_reports_router)
    app.include_router(metrics_router)
    app.include_router(webhooks_router)
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.widget_origins,
        allow_methods=["POST", "GET"],
        allow_headers=["Content-Type", "Idempotency-Key", "Captcha-Token"],
        max_age=600,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        limits_by_path={WEBHOOK_PATH: MAX_WEBHOOK_BYTES},
    )
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    install_widget(app)
    app.include_router(manage_router)
    app.include_router(upgrades_router)
    app.include_router(statements_manage_router)
    return app
