"""Server-side verification of a Cloudflare Turnstile or hCaptcha token, when one is configured."""

import httpx
import structlog

from billing.settings import Settings

log = structlog.get_logger()

VERIFY_URLS = {
    "turnstile": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
    "hcaptcha": "https://api.hcaptcha.com/siteverify",
}


class CaptchaUnavailable(Exception):
    pass


async def verify(settings: Settings, token: str, remote_ip: str | None) -> bool:
    """True when the provider vouches for `token`; both providers share one siteverify API."""
    if settings.captcha_secret is None:
        return False
    url = settings.captcha_verify_url or VERIFY_URLS[settings.captcha_provider]
    form = {"secret": settings.captcha_secret.get_secret_value(), "response": token}
    if remote_ip:
        form["remoteip"] = remote_ip
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(url, data=form)
            response.raise_for_status()
            outcome = response.json()
    except (httpx.HTTPError, ValueError) as error:
        log.warning("captcha_unavailable", provider=settings.captcha_provider, error=str(error))
        raise CaptchaUnavailable from error
    if not outcome.get("success"):
        log.warning("abuse_refused", reason="captcha", codes=outcome.get("error-codes"))
        return False
    return True
