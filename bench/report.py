"""Rows of the results table, and the Markdown page around them (machine, versions, date)."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import re
import statistics
import sys


def _fmt(x):
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if x == 0:
        return "0"
    mag = abs(x)
    if mag >= 100:
        return f"{x:.0f}"
    if mag >= 10:
        return f"{x:.1f}"
    if mag >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _mmm(xs):
    xs = sorted(xs)
    return f"{_fmt(xs[0])} / **{_fmt(statistics.median(xs))}** / {_fmt(xs[-1])}"


def row(
    fig,
    what,
    ours,
    sdk,
    target_text,
    target=None,
    higher=False,
    absolute=None,
    base=None,
    base_name=None,
    strict=False,
    extra=None,
):
    """ours/sdk: the runs' values. target: a ratio bound (ours over sdk, or over `base` when given);
    absolute: a bound on our median itself. higher: the bound is a floor."""
    mo = statistics.median(ours)
    ms = statistics.median(sdk)
    if higher:  # P4: the figure itself is the ratio that has the target
        ratio_txt = f"ours {_fmt(mo)}, SDK {_fmt(ms)}"
        met = "met" if mo >= target else "**missed**"
    else:
        den = statistics.median(base) if base else ms
        ratio = mo / den if den else float("inf")
        ratio_txt = f"{ratio:.3g}" if den or mo else "–"
        if base:
            ratio_txt = f"ours {ratio:.3g}, SDK {ms / den:.3g} (× {base_name} {_fmt(den)})"
        elif ms:
            ratio_txt += f" (SDK/ours {ms / mo:.3g})" if mo else ""
        parts = []
        if target is not None:
            ok = ratio < target if strict else ratio <= target
            parts.append("ratio " + ("met" if ok else "**missed**"))
        if absolute is not None:
            parts.append(f"≤ {_fmt(absolute)} " + ("met" if mo <= absolute else "**missed**"))
        met = ", ".join(parts) if parts else None
    return {
        "fig": fig,
        "what": what + (f" — {extra}" if extra else ""),
        "ours": _mmm(ours),
        "sdk": _mmm(sdk),
        "ratio": ratio_txt,
        "target": target_text,
        "met": met or "–",
        "values": {"ours": list(ours), "sdk": list(sdk)},
    }


def solo(fig, what, ours, target_text, absolute=None, extra=None):
    """A figure of our client alone (no SDK run for it); absolute: a bound on our median."""
    mo = statistics.median(ours)
    met = "–"
    if absolute is not None:
        met = f"≤ {_fmt(absolute)} " + ("met" if mo <= absolute else "**missed**")
    return {
        "fig": fig,
        "what": what + (f" — {extra}" if extra else ""),
        "ours": _mmm(ours),
        "sdk": "not run",
        "ratio": "–",
        "target": target_text,
        "met": met,
        "values": {"ours": list(ours), "sdk": None},
    }


def machine():
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {mem}, {cpu}, {platform.system()} {platform.release()}"


def versions():
    import scenario_uni1
    from scenario_uni1 import _core

    def v(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"Python {platform.python_version()} ({sys.implementation.name}); libcurl {_core.curl_version}; "
        f"scenario_uni1 {scenario_uni1.__version__}; scenario-sdk {v('scenario-sdk')}; httpx {v('httpx')}; "
        f"pydantic {v('pydantic')}"
    )


def render(rows, notes, *, quick, runs, seconds, load):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks: scenario_uni1 against scenario-sdk",
        "",
        f"- date: {now}; `python -m bench{' --quick' if quick else ''}`, {runs} runs per figure and client, "
        f"{seconds / 60:.1f} min in all",
        f"- machine: {machine()}; load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end",
        f"- versions: {versions()}",
        "- setup: the emulator runs in the driver process; each client runs in its own fresh subprocess, so its "
        "CPU and RSS are read alone. Cells are min / **median** / max of the runs; the ratio is ours over the "
        "SDK's on the medians (unless the row says otherwise).",
        "- the SDK has no helper to wait for a job or to fetch an asset's bytes: the loop its docs suggest is "
        "written in bench/clients.py (GET /jobs/{id} at once, then every 3 s, as its JS helper polls; "
        "GET /assets/{id} for the signed URL; one shared `httpx.Client` for the CDN; file: temp file, fsync, rename).",
        "",
        "| id | figure | scenario_uni1 | scenario-sdk | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['fig']} | {r['what']} | {r['ours']} | {r['sdk']} | {r['ratio']} | {r['target']} "
            f"| {r['met']} |"
        )
    out += ["", "## How each figure is taken", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


_FIG = re.compile(r"^(P\d+)\b")


def _split(text):
    """(header lines, {fig: [table lines]}, {fig or None: [note lines]}) of a RESULTS.md."""
    head, rows, notes = [], {}, {}
    part = "head"
    for line in text.splitlines():
        if line.startswith("| id |") or line.startswith("|---"):
            part = "table"
            continue
        if line.startswith("## How each figure is taken"):
            part = "notes"
            continue
        if part == "head" and (line.startswith("- ") or line.startswith("  - ")):
            head.append(line)
        elif part == "table" and line.startswith("| P"):
            rows.setdefault(line.split("|")[1].strip(), []).append(line)
        elif part == "notes" and line.startswith("- "):
            m = _FIG.match(line[2:])
            notes.setdefault(m.group(1) if m else None, []).append(line)
    return head, rows, notes


def _runs(head, figs_in_table):
    """[(figs, date text, machine text)] of the runs a header names, the newest first: its
    "- date:" (with "— rows ..." once merged, else every figure of the table) and each
    earlier "- rows ...: date" with its "  - machine:" line."""
    runs, older = [], set()
    for i, x in enumerate(head):
        if x.startswith("- rows "):
            names, date = x[len("- rows ") :].split(": ", 1)
            nxt = head[i + 1] if i + 1 < len(head) else ""
            machine = nxt[len("  - machine: ") :] if nxt.startswith("  - machine: ") else None
            runs.append((names.split(", "), date, machine))
            older.update(names.split(", "))
    date = next((x[len("- date: ") :] for x in head if x.startswith("- date: ")), None)
    machine = next((x[len("- machine: ") :] for x in head if x.startswith("- machine: ")), None)
    if date is not None:
        date, _, named = date.partition(" — rows ")
        figs = named.split(", ") if named else [f for f in figs_in_table if f not in older]
        runs.insert(0, (figs, date, machine))
    return runs


def merge(old_text, new_text, figs):
    """RESULTS.md with the rows and notes of `figs` from new_text and every other figure's
    from old_text (earlier runs), the header saying which run each row comes from."""
    old_head, old_rows, old_notes = _split(old_text)
    new_head, new_rows, new_notes = _split(new_text)
    earlier = []
    for run_figs, date, machine in _runs(old_head, list(old_rows)):
        kept = [f for f in run_figs if f not in figs and f in old_rows]
        if kept:
            earlier.append(f"- rows {', '.join(kept)}: {date}")
            if machine:
                earlier.append(f"  - machine: {machine}")
    head = []
    for x in new_head:
        if x.startswith("- date:"):
            date = x.partition(" — rows ")[0]
            head.append(date + f" — rows {', '.join(f for f in figs if f in new_rows)}")
        elif x.startswith("- machine:"):
            head += [x] + earlier
        elif not x.startswith("- rows ") and not x.startswith("  - "):
            head.append(x)
    order = sorted(set(old_rows) | set(new_rows), key=lambda f: int(f[1:]))
    table = []
    for f in order:
        table += new_rows.get(f, []) if f in figs else old_rows.get(f, [])
    notes = []
    for f in order:
        notes += new_notes.get(f, []) if f in figs else old_notes.get(f, [])
    general = old_notes.get(None, []) + [
        n for n in new_notes.get(None, []) if n not in old_notes.get(None, [])
    ]
    out = ["# Benchmarks: scenario_uni1 against scenario-sdk", ""] + head + [""]
    out += [
        "| id | figure | scenario_uni1 | scenario-sdk | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    out += table + ["", "## How each figure is taken", ""] + notes + general + [""]
    return "\n".join(out)
