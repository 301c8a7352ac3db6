"""A real Mosquitto running the PRODUCTION configuration of broker/, owned by the test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents._process import free_port
from tests.deploy.broker_setup import (
    PASSWORDS,
    ProductionBroker,
    build_password_file,
    make_tls,
    render_production_config,
    start_mosquitto,
)


@pytest.fixture(scope="module")
def production_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionBroker]:
    folder = tmp_path_factory.mktemp("production-broker")
    host = "127.0.0.1"
    port, tls_port = free_port(host), free_port(host)
    tls = make_tls(folder / "tls", host)
    build_password_file(folder / "passwd", PASSWORDS)
    config = folder / "mosquitto.conf"
    config.write_text(
        render_production_config(folder, host=host, port=port, tls_port=tls_port, tls=tls)
    )
    process = start_mosquitto(config, port, tls_port, host=host)
    try:
        yield ProductionBroker(host, port, tls_port, tls, folder)
    finally:
        process.kill()
        process.wait()
