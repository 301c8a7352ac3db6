# Stand-in for eclipse-mosquitto: Debian bookworm's Mosquitto 2.0 and its clients, with the
# official image's layout (/mosquitto/config, /mosquitto/data owned by user mosquitto).
ARG DEBIAN=agent-society-stand-in/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \
    && chown -R mosquitto:mosquitto /mosquitto/data /mosquitto/log \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
VOLUME ["/mosquitto/data"]
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
