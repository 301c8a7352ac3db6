# Stand-in for prom/prometheus: Debian bookworm's Prometheus 2.42 (its binaries only: the
# package's web libraries are 200 MB the API does not need) and wget (the compose
# healthcheck's), run as `nobody` with its data in /prometheus like the official image.
ARG DEBIAN=agent-society-stand-in/debian:bookworm
FROM ${DEBIAN} AS package
RUN apt-get update && apt-get install -y --no-install-recommends prometheus

FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY --from=package /usr/bin/prometheus /usr/bin/promtool /usr/bin/
USER nobody
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
