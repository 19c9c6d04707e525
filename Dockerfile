# The pcf-exchange image used by docker-compose.yml's services: the package installed (not
# editable) with its data, the demo's supply chain included (pcf_exchange.pcfx.demo_data), and the compose
# set-up script (infra/compose/setup.sh). The services' ports: 9464 streams, 9465 gateway,
# 9466 API (plain HTTP: /metrics, /healthz, /readyz), 8443 the PACT API (HTTPS).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY producers producers
COPY streams streams
COPY gateway gateway
COPY pcfx pcfx
COPY infra infra
COPY demo demo
COPY pcf_exchange pcf_exchange
RUN pip install --no-cache-dir .
EXPOSE 8443 9464 9465 9466
ENTRYPOINT ["pcfx"]
