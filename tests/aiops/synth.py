"""A small synthetic multi-source log with known templates, for the miner's tests."""

from __future__ import annotations

import random

USERS = ["root", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"]
FILES = ["/etc/passwd", "/var/log/app/main.log", "/srv/data/x.bin", "/home/alice/notes.txt"]


def _ip(r: random.Random) -> str:
    return ".".join(str(r.randrange(256)) for _ in range(4))


def _syslog(r: random.Random, body: str) -> str:
    day = r.randrange(1, 29)
    return (
        f"{r.choice(['Jun', 'Jul'])} {day:>2} {r.randrange(24):02}:{r.randrange(60):02}:"
        f"{r.randrange(60):02} web{r.randrange(10)} sshd[{r.randrange(1, 65536)}]: {body}"
    )


def _log4j(r: random.Random, level: str, component: str, body: str) -> str:
    return (
        f"2024-05-{r.randrange(1, 29):02} {r.randrange(24):02}:{r.randrange(60):02}:"
        f"{r.randrange(60):02},{r.randrange(1000):03} {level} [{r.choice(['main', 'worker 3'])}] "
        f"{component}: {body}"
    )


# (true template, generator)
SOURCES = [
    (
        "ssh accepted",
        lambda r: _syslog(
            r,
            f"Accepted password for {r.choice(USERS)} from {_ip(r)} port {r.randrange(1024, 65536)} ssh2",
        ),
    ),
    (
        "ssh failed",
        lambda r: _syslog(
            r,
            f"Failed password for invalid user {r.choice(USERS)} from {_ip(r)} port {r.randrange(1024, 65536)} ssh2",
        ),
    ),
    ("ssh closed", lambda r: _syslog(r, f"Connection closed by {_ip(r)} [preauth]")),
    (
        "ssh session",
        lambda r: _syslog(
            r,
            f"pam_unix(sshd:session): session opened for user {r.choice(USERS)} by (uid={r.randrange(2000)})",
        ),
    ),
    (
        "block served",
        lambda r: _log4j(
            r,
            "INFO",
            "dfs.DataNode",
            f"Served block blk_{r.randrange(-(10**18), 10**18)} to /{_ip(r)}",
        ),
    ),
    (
        "block received",
        lambda r: _log4j(
            r,
            "INFO",
            "dfs.DataNode",
            f"Received block blk_{r.randrange(10**18)} of size {r.randrange(10**8)} from /{_ip(r)}",
        ),
    ),
    (
        "block deleted",
        lambda r: _log4j(
            r,
            "WARN",
            "dfs.FSNamesystem",
            f"Deleting block blk_{r.randrange(10**18)} file {r.choice(FILES)}",
        ),
    ),
    (
        "task done",
        lambda r: _log4j(
            r,
            "INFO",
            "mapred.TaskRunner",
            f"Task attempt_{r.randrange(10**12)}_{r.randrange(100):04}_m_{r.randrange(10**6):06}_0 is done.",
        ),
    ),
    (
        "task failed",
        lambda r: _log4j(
            r,
            "ERROR",
            "mapred.TaskRunner",
            f"Task attempt_{r.randrange(10**12)}_{r.randrange(100):04}_m_{r.randrange(10**6):06}_0 failed: exit code {r.randrange(1, 255)}",
        ),
    ),
    ("cache hit", lambda r: f"cache hit key={r.randrange(10**9):x} in {r.random() * 10:.3f} ms"),
    (
        "cache miss",
        lambda r: f"cache miss key={r.randrange(10**9):x} loaded in {r.random() * 100:.3f} ms",
    ),
    (
        "gc",
        lambda r: (
            f"GC pause {r.randrange(1, 500)}ms heap {r.randrange(100, 900)}M/{r.randrange(1000, 2000)}M"
        ),
    ),
]


def synthetic_log(n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """``n`` lines drawn from ``SOURCES`` and each line's true template name."""
    r = random.Random(seed)
    lines, truth = [], []
    for _ in range(n):
        name, gen = r.choice(SOURCES)
        lines.append(gen(r))
        truth.append(name)
    return lines, truth


def grouping_accuracy(pred: list[int], true: list[str]) -> float:
    pred_groups: dict[int, set[int]] = {}
    true_groups: dict[str, set[int]] = {}
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        pred_groups.setdefault(p, set()).add(i)
        true_groups.setdefault(t, set()).add(i)
    ok = sum(len(g) for g in true_groups.values() if pred_groups[pred[min(g)]] == g)
    return ok / len(true)
