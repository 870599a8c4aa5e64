# Image for the pipeline's processes (scorer, monitor, jobs); used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY pipeline ./pipeline
COPY schemas ./schemas
RUN pip install --no-cache-dir -c constraints.txt .
ENV FRAUD_SCHEMAS_DIR=/app/schemas \
    FRAUD_REGISTRY_DIR=/models \
    FRAUD_METRICS_HOST=0.0.0.0
VOLUME ["/models"]
ENTRYPOINT ["fraud"]
CMD ["--help"]
