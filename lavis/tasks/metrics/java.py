"""The Java side of COCO caption scoring: the Stanford PTB tokenizer and the METEOR server.

Both run the jars that ship with ``pycocoevalcap`` with the same command-line options as its
``PTBTokenizer`` and ``Meteor`` classes, so the numbers are the same, but the processes are
driven here so that:

- captions that hold line breaks (``\\r``, ``\\u2028``, ...) cannot shift the captions after them
  onto the wrong image (the tokenizer splits lines on more characters than ``\\n``);
- nothing is written into the installed package (it may be read-only), text goes through pipes
  in UTF-8 whatever the locale;
- a missing ``java``, a process that dies or one that stops answering is a clear error, never a
  silent misalignment or a hang;
- the METEOR process, whose start-up (loading its paraphrase table) costs about 5 s, starts in the
  background while the rest is scored and is kept for the next evaluation (:func:`meteor_server`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

from lavis.tasks.metrics.errors import JavaNotFoundError, MetricError

INSTALL_JAVA_HINT = (
    "install a Java runtime (8 or newer), e.g. `apt-get install default-jre-headless` on Debian/Ubuntu "
    "or `conda install -c conda-forge openjdk`, make sure `java` is on PATH (or set JAVA_HOME), "
    "or set run.report_metric: false to only write the captions"
)


def pycocoevalcap_dir() -> Path:
    """Folder of the installed ``pycocoevalcap`` package (it holds the jars)."""
    try:
        import pycocoevalcap
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise MetricError("caption scoring needs pycocoevalcap: pip install 'pycocoevalcap>=1.2'") from e
    return Path(list(pycocoevalcap.__path__)[0])


def find_java() -> str:
    """Path of the ``java`` executable: ``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            "caption scoring needs Java (the PTB tokenizer and METEOR of pycocoevalcap are Java programs) "
            f"but no `java` was found on PATH: {INSTALL_JAVA_HINT}"
        )
    return java


def _one_line(text: str) -> str:
    """``text`` with every line boundary (``\\n``, ``\\r``, ``\\u2028``, ``\\x85``, ...) turned into a space."""
    return " ".join(text.splitlines())


def _tail(path: str | os.PathLike, n: int = 2000) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-n:].strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# PTB tokenizer
# ---------------------------------------------------------------------------------------------
def ptb_tokenize(captions: Sequence[str], timeout_s: float = 600.0) -> list[str]:
    """Tokenize ``captions`` like pycocoevalcap's ``PTBTokenizer``: lower-cased PTB tokens joined by
    single spaces, with punctuation tokens removed. One Java process for all captions; the output
    has one entry per input caption, in order (an empty caption gives ``""``)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    if not captions:
        return []
    jar = pycocoevalcap_dir() / "tokenizer" / STANFORD_CORENLP_3_4_1_JAR
    cmd = [find_java(), "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
           "-preserveLines", "-lowerCase", "-encoding", "utf-8"]
    text = "\n".join(_one_line(c) for c in captions) + "\n"
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8", errors="replace"), capture_output=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise MetricError(f"the PTB tokenizer did not finish within {timeout_s:.0f} s on {len(captions)} captions") from e
    except OSError as e:
        raise JavaNotFoundError(f"cannot start the PTB tokenizer ({cmd[0]}: {e}): {INSTALL_JAVA_HINT}") from e
    if proc.returncode != 0:
        raise MetricError(
            f"the PTB tokenizer ({' '.join(cmd)}) failed with exit code {proc.returncode}: "
            f"{proc.stderr.decode('utf-8', errors='replace')[-2000:].strip()}"
        )
    lines = proc.stdout.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(captions):
        raise MetricError(
            f"the PTB tokenizer returned {len(lines)} lines for {len(captions)} captions; "
            "a caption holds a character it reads as a line break. Please report the captions."
        )
    drop = set(PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in drop) for line in lines]


# ---------------------------------------------------------------------------------------------
# METEOR
# ---------------------------------------------------------------------------------------------
class MeteorServer:
    """A running ``meteor-1.5.jar -stdio`` process (English, normalized, as in pycocoevalcap).

    Starting returns at once; the first :meth:`score` waits until the paraphrase table is loaded.
    Use one from several threads safely; :meth:`close` ends the process.
    """

    def __init__(self) -> None:
        from pycocoevalcap.meteor.meteor import METEOR_JAR

        folder = pycocoevalcap_dir() / "meteor"
        # Same options as pycocoevalcap's Meteor; the serial GC halves the memory the idle server holds.
        cmd = [find_java(), "-Xmx2G", "-XX:+UseSerialGC", "-jar", METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._stderr = tempfile.NamedTemporaryFile(prefix="lavis-meteor-", suffix=".log", delete=False)
        try:
            self._proc = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._stderr)
        except OSError as e:
            self._cleanup_log()
            raise JavaNotFoundError(f"cannot start METEOR ({cmd[0]}: {e}): {INSTALL_JAVA_HINT}") from e
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None  # both are PIPE above
        self._stdin, self._stdout = stdin, stdout
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def _ask(self, line: str, answers: int) -> list[str]:
        self._stdin.write((line + "\n").encode("utf-8", errors="replace"))
        self._stdin.flush()
        out = []
        for _ in range(answers):
            got = self._stdout.readline()
            if not got:
                raise EOFError
            out.append(got.decode("utf-8", errors="replace").strip())
        return out

    def score(self, references: Sequence[Sequence[str]], hypotheses: Sequence[str],
              timeout_s: float = 600.0) -> tuple[float, list[float]]:
        """Corpus METEOR and one score per hypothesis; ``references[i]`` are the captions of image i.

        Inputs are expected PTB-tokenized (as :func:`ptb_tokenize` returns them)."""
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} reference lists for {len(hypotheses)} hypotheses")
        if not hypotheses:
            return 0.0, []
        with self._lock:
            fired = threading.Event()

            def on_timeout() -> None:
                fired.set()
                self._proc.kill()

            timer = threading.Timer(timeout_s, on_timeout)
            timer.daemon = True
            timer.start()
            try:
                stats = []
                for refs, hyp in zip(references, hypotheses):
                    # Same clean-up of the hypothesis as pycocoevalcap; "|||" separates fields.
                    hyp = _one_line(hyp).replace("|||", "").replace("  ", " ")
                    fields = [_one_line(r).replace("|||", "") for r in refs]
                    stats += self._ask(" ||| ".join(["SCORE", *fields, hyp]), 1)
                answers = self._ask(" ||| ".join(["EVAL", *stats]), len(hypotheses) + 1)
                per_image = [float(a) for a in answers[:-1]]
                return float(answers[-1]), per_image
            except (EOFError, BrokenPipeError, ValueError) as e:
                self._proc.kill()
                why = f"did not answer within {timeout_s:.0f} s" if fired.is_set() else "stopped or answered garbage"
                raise MetricError(
                    f"METEOR {why} (java exit code {self._proc.wait()}); its log: {_tail(self._stderr.name) or '(empty)'}. "
                    "If java ran out of memory, free some (METEOR wants up to 2 GB) or drop METEOR from run.metrics."
                ) from e
            finally:
                timer.cancel()

    def __enter__(self) -> "MeteorServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the process and remove its log."""
        try:
            self._stdin.close()
        except OSError:  # the process is gone already
            pass
        if self.alive():
            self._proc.kill()
        self._proc.wait()
        self._stdout.close()
        self._cleanup_log()

    def _cleanup_log(self) -> None:
        self._stderr.close()
        try:
            os.unlink(self._stderr.name)
        except OSError:
            pass


_server: MeteorServer | None = None
_server_lock = threading.Lock()


def meteor_server() -> MeteorServer:
    """The process-wide METEOR server, started on first use (and again if it died)."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            if _server is not None:
                _server.close()
            _server = MeteorServer()
        return _server


@atexit.register
def close_meteor() -> None:
    """Stop the process-wide METEOR server (frees its memory; the next scoring starts a new one)."""
    global _server
    with _server_lock:
        if _server is not None:
            _server.close()
            _server = None
