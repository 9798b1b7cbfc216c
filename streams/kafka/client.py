"""How every Kafka client of ours connects: bootstrap servers, TLS and SASL from the settings.

``kafka_options(settings)`` is what each aiokafka producer, consumer and admin
client is built with; :func:`check_kafka` connects once at start and turns
whatever goes wrong into a :class:`settings.ConfigError` that says which
setting to look at (never a stack trace, never a hang, never a secret).
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context

from settings import ConfigError, Settings


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (None when the protocol does not use TLS)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    try:
        return create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password=settings.secret("kafka_ssl_key_password"),
        )
    except ssl.SSLError as exc:
        raise ConfigError(
            "WARDEN_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE (/ _KEY_PASSWORD): cannot load them "
            f"({exc.reason or exc.__class__.__name__})"
        ) from None


def kafka_options(settings: Settings) -> dict:
    """Keyword arguments for any aiokafka client: bootstrap servers, security protocol, SASL, TLS."""
    options: dict = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = tls_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.secret("kafka_sasl_password"),
        )
    return options


def _explain(exc: BaseException, settings: Settings) -> str:
    where = f"Kafka at {settings.bootstrap_servers}"
    protocol = settings.kafka_security_protocol
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); "
            "WARDEN_KAFKA_SSL_CAFILE must name the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"{where}: the TLS handshake failed ({exc.reason}); is WARDEN_KAFKA_SECURITY_PROTOCOL={protocol} right?"
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"{where} does not offer WARDEN_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}"
    if (
        protocol.startswith("SASL")
        and isinstance(exc, (KeyError, ValueError, KafkaError))
        and not isinstance(exc, KafkaConnectionError)
    ):
        # aiokafka reports a refused SCRAM login as a malformed server answer (KeyError 'v') or an auth error
        return (
            f"{where} refused the SASL login of user {settings.kafka_sasl_username!r} "
            f"({settings.kafka_sasl_mechanism}): check WARDEN_KAFKA_SASL_USERNAME and the password setting"
        )
    if isinstance(exc, (KafkaConnectionError, OSError)):
        hint = (
            "; if the cluster requires TLS or SASL, set WARDEN_KAFKA_SECURITY_PROTOCOL"
            if protocol == "PLAINTEXT"
            else f"; does it offer WARDEN_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} over {protocol}?"
            if protocol.startswith("SASL")
            else ""
        )
        return f"{where}: cannot connect or the broker closed the connection (WARDEN_BROKER){hint}"
    return f"{where}: {exc.__class__.__name__} while connecting"


async def check_kafka(settings: Settings) -> None:
    """Connect to the brokers once; raise :class:`ConfigError` saying what is wrong if that fails."""
    timeout = settings.connect_timeout_s
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
    except TimeoutError:
        raise ConfigError(
            f"Kafka at {settings.bootstrap_servers}: no answer within {timeout:.0f} s "
            "(WARDEN_BROKER, WARDEN_CONNECT_TIMEOUT_S)"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(_explain(exc, settings)) from None
    finally:
        await admin.close()
