# One image for the API, the worker, beat and the local-only helpers (localstripe, mail catcher).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Giving statements are rendered to PDF by WeasyPrint: Pango and a font with Cyrillic.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY billing ./billing
COPY webhooks ./webhooks
COPY workers ./workers
# Compiled catalogs are not in git: build them before the install copies them into the package.
RUN pip install -c constraints.txt babel \
    && pybabel compile -D messages -d billing/locales \
    && pip install -c constraints.txt . && useradd --create-home pledges
USER pledges
EXPOSE 8000
CMD ["pledges", "serve", "--host", "0.0.0.0", "--port", "8000"]
