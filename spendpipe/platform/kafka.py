"""Kafka connection settings, turned into FastStream security objects and aiokafka arguments.

One mapping serves both: the services' FastStream brokers take `security=`, the gateway's
plain aiokafka producer takes the keyword arguments FastStream derives from the same object.
"""

import functools
import logging
import ssl
from collections.abc import Callable
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel, Field, SecretStr, model_validator

from spendpipe.platform.unreadable import TolerantConsumer


class KafkaSettings(BaseModel):
    bootstrap_servers: str = Field(default="127.0.0.1:9092", pattern=r"^[^\s,]+:\d+(,[^\s,]+:\d+)*$")
    """Comma-separated host:port list."""
    client_id: str = "spendpipe"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    """CA bundle to verify the brokers with; the system store when unset."""
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> "KafkaSettings":
        if self.security_protocol.startswith("SASL"):
            missing = [
                name for name in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        return self

    @property
    def servers(self) -> list[str]:
        return self.bootstrap_servers.split(",")

    def security(self) -> BaseSecurity | None:
        use_ssl = self.security_protocol in ("SSL", "SASL_SSL")
        context = self._ssl_context() if use_ssl else None
        if not self.security_protocol.startswith("SASL"):
            return BaseSecurity(ssl_context=context, use_ssl=use_ssl) if use_ssl else None
        username = self.sasl_username or ""
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        sasl = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }[self.sasl_mechanism or "PLAIN"]
        return sasl(
            username=username,
            password=password,
            ssl_context=context,
            use_ssl=use_ssl,
        )

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Arguments for a plain `AIOKafkaProducer`/`AIOKafkaConsumer`."""
        return {
            "bootstrap_servers": self.servers,
            "client_id": self.client_id,
            **parse_security(self.security()),
        }

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context


class TolerantBroker(KafkaBroker):
    """FastStream's broker, whose subscribers read with a `TolerantConsumer`: FastStream's consume
    loop stops for good on an error that is not a `KafkaError`, which is what aiokafka raises on
    a record it cannot parse (`platform.unreadable`). FastStream builds its consumers with the
    builder it makes on connecting, so the builder is swapped for one of the same options then."""

    async def _connect(self) -> Callable[..., AIOKafkaConsumer]:
        await super()._connect()
        config = self.config.broker_config
        built = config.builder
        if not isinstance(built, functools.partial):
            raise TypeError(f"FastStream's consumer builder is not a partial of AIOKafkaConsumer: {built!r}")
        config.builder = functools.partial(TolerantConsumer, *built.args, **built.keywords)
        return config.builder


def build_broker(kafka: KafkaSettings) -> KafkaBroker:
    """A FastStream broker for the services (idempotent producer for what they publish)."""
    return TolerantBroker(
        kafka.servers,
        security=kafka.security(),
        client_id=kafka.client_id,
        enable_idempotence=True,
        log_level=logging.DEBUG,  # one line per handled batch is noise at INFO
    )
