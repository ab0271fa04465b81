"""`vertjax serve --config ...`: the assistant over HTTP (OpenAI-compatible chat + /v1/answer)."""

from __future__ import annotations

import argparse

from vertjax.commands import answer

HELP = "serve the assistant over HTTP on 127.0.0.1 (POST /v1/chat/completions, /v1/answer)"


# `ServerConfig` fields set by the flag of the same name (default: the field's), with their help.
SERVER_FLAGS: tuple[tuple[str, str], ...] = (
    ("host", "bind address; anything but loopback needs the --api_key_env variable set"),
    ("port", "TCP port (0: any free port)"),
    ("max_body_bytes", "largest request body accepted; a larger one gets 413"),
    ("request_timeout", "seconds an answer may take before the request gets 504"),
    (
        "request_deadline",
        "seconds a request's line, headers and body may take to arrive (then 408)",
    ),
    ("max_concurrent", "answers computed at once"),
    ("max_connections", "connections served at once; one more gets 503"),
    ("backlog", "listen backlog"),
    ("api_key_env", "environment variable holding the bearer token clients must send"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vertjax.system import server

    answer.add_system_flags(parser)
    defaults = server.ServerConfig()
    for name, help_text in SERVER_FLAGS:
        default = getattr(defaults, name)
        parser.add_argument(f"--{name}", type=type(default), default=default, help=help_text)


def run(args: argparse.Namespace) -> int:
    from vertjax.system import server

    config = server.ServerConfig(**{name: getattr(args, name) for name, _ in SERVER_FLAGS})
    httpd = server.make_server(answer.build_assistant(args), config)
    host, port = httpd.server_address[:2]
    auth = "bearer token required" if httpd.api_key else "no API key (loopback only)"
    print(f"vertjax serve: listening on http://{host}:{port} ({auth})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
