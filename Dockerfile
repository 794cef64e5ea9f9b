# One image for the API, the worker, beat and the local-only helpers (localstripe, mail catcher).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY billing ./billing
COPY webhooks ./webhooks
COPY workers ./workers
RUN pip install -c constraints.txt . && useradd --create-home pledges
USER pledges
EXPOSE 8000
CMD ["pledges", "serve", "--host", "0.0.0.0", "--port", "8000"]
