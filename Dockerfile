# The pcf-exchange image used by docker-compose.yml's services.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY producers producers
COPY streams streams
COPY gateway gateway
COPY pcfx pcfx
COPY infra infra
COPY bench bench
RUN pip install --no-cache-dir .
ENTRYPOINT ["pcfx"]
