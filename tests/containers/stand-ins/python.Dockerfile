# Stand-in for python:3.11-slim: Debian bookworm's Python 3.11 and pip, as `python` and `pip`,
# installing into /usr/local like the official image (no "externally managed" refusal).
ARG DEBIAN=agent-society-stand-in/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
CMD ["python3"]
