"""The chaos soak's verdict: what one run measured (`Outcome`), its targets checked one by one, the BENCHMARKS.md
section and the plot. Plain Python (matplotlib only for the plot, when the venv has it)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from enum import Enum

from bench.chaos_hang import HangClaim
from bench.chaos_plan import RESTART_ROLE, NamedHang, PSKill, Sample, growth_percent, render_table, store_series

HANG_NAMING_SLACK_S = 10.0  # a hang must be named within env.step_timeout_s and this
GROWTH_LIMIT_PERCENT = 5.0
SECTION = "chaos"  # BENCHMARKS.md's <!-- chaos:begin --> ... <!-- chaos:end -->
SECTION_ROWS = 6  # the section's table keeps about this many rows (the full table is in --out-dir)


class Target(str, Enum):
    """The soak's targets (issue 43), in the order they are checked."""

    RUN_EXIT = "run_exit"
    RESTARTS = "restarts"
    HANG_NAMED = "hang_named"
    WENT_ON = "went_on"
    RSS_GROWTH = "rss_growth"
    STORE_GROWTH = "store_growth"
    PS_LOSS = "ps_loss"
    FINAL_EVAL = "final_eval"


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_MEASURED = "NOT MEASURED"  # a missing figure: never reported as a pass


@dataclass(frozen=True)
class Check:
    target: Target
    title: str  # the target in words, with its figures (limits, minutes)
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value}: {self.title}: {self.detail}"


def check(target: Target, title: str, ok: bool | None, detail: str) -> Check:
    """ok None: the figure is missing."""
    verdict = Verdict.NOT_MEASURED if ok is None else Verdict.PASS if ok else Verdict.FAIL
    return Check(target, title, verdict, detail)


@dataclass
class Outcome:
    """Everything one soak measured; JSON-ready (dataclasses.asdict)."""

    run_exit: int  # the run's own exit code: 0 it ended by its rule or budget, 2 an A3CError, 1 anything else
    run_error: str
    planned: dict  # Fault value -> events scheduled
    kills: dict  # restart role -> kills delivered
    restarts: dict  # restart role -> the run's count (its summary)
    skipped: list  # events not delivered, and why
    hangs_pulled: int
    claims: list[HangClaim]
    named: list[NamedHang]
    step_timeout_s: float
    t0_wall: float | None  # wall clock of the run's training start (the samples' minute 0)
    samples: list[Sample]
    baseline_minute: float
    ps_kills: list[PSKill]
    summary_lost_updates: int
    final_eval: float | None  # mean over the fresh evaluation's episodes; None: not run
    final_eval_std: float | None
    target_return: float
    env_steps: int = 0
    delivered: list = field(default_factory=list)  # (seconds from minute 0, restart role) of each kill
    extra: dict = field(default_factory=dict)


def judge(o: Outcome) -> list[Check]:
    """Each target, PASS / FAIL / NOT MEASURED, in the issue's order."""
    return [
        check(Target.RUN_EXIT, "the run exits 0", o.run_exit == 0, f"exit {o.run_exit} {o.run_error}".strip()),
        _restarts(o),
        _hang_named(o),
        _went_on(o),
        _growth(o, Target.RSS_GROWTH, "session RSS", [(s.minute, s.rss_bytes) for s in o.samples]),
        _growth(o, Target.STORE_GROWTH, *store_series(o.samples)),
        _ps_losses(o),
        check(
            Target.FINAL_EVAL,
            f"final fresh evaluation >= {o.target_return:g}",
            None if o.final_eval is None else o.final_eval >= o.target_return,
            "not run" if o.final_eval is None else f"{o.final_eval:.1f} +- {o.final_eval_std or 0:.1f} (std)",
        ),
    ]


def _restarts(o: Outcome) -> Check:
    roles = list(RESTART_ROLE.values())
    text = ", ".join(f"{role} {o.restarts.get(role, 0)}/{o.kills.get(role, 0)}" for role in roles)
    skipped = f"; {len(o.skipped)} event(s) not delivered" if o.skipped else ""
    ok = all(o.restarts.get(role, 0) == o.kills.get(role, 0) for role in roles)
    return check(Target.RESTARTS, "restarts equal kills", ok, f"restarts/kills: {text}{skipped}")


def match_claims(o: Outcome) -> list[tuple[HangClaim, NamedHang | None]]:
    """Each env that hung with the first hang the driver named for its seed and episode step."""
    return [
        (c, next((n for n in o.named if n.seed == c.seed and n.episode_step == c.episode_step), None)) for c in o.claims
    ]


def _hang_named(o: Outcome) -> Check:
    target, title = Target.HANG_NAMED, f"each hung env named within env.step_timeout_s + {HANG_NAMING_SLACK_S:g} s"
    if not o.hangs_pulled:
        return check(target, title, None, "no hang was scheduled")
    pairs = match_claims(o)
    if len(pairs) < o.hangs_pulled:
        return check(target, title, False, f"{o.hangs_pulled} trigger(s) made, {len(pairs)} taken by an env")
    limit = o.step_timeout_s + HANG_NAMING_SLACK_S
    parts, ok = [], True
    for claim, named in pairs:
        if named is None:
            ok = False
            parts.append(f"seed {claim.seed} step {claim.episode_step}: never named")
            continue
        after = named.named_at - claim.hung_at
        ok = ok and after <= limit
        parts.append(
            f"worker {named.worker_rank}, env {named.env_index}, seed {named.seed}, step {named.episode_step}: "
            f"named after {after:.1f} s (limit {limit:g})"
        )
    return check(target, title, ok, "; ".join(parts))


def _went_on(o: Outcome) -> Check:
    """After the last hang was named, the PS's env steps still grew (and the run ended by itself)."""
    target, title = Target.WENT_ON, "the run goes on after the hang"
    if not o.named or o.t0_wall is None:
        return check(target, title, None, "no hang named")
    named_min = (max(n.named_at for n in o.named) - o.t0_wall) / 60
    after = [s.env_steps for s in o.samples if s.minute > named_min and s.env_steps is not None]
    if len(after) < 2:
        return check(target, title, None, f"fewer than 2 samples after minute {named_min:.1f}")
    return check(
        target, title, after[-1] > after[0], f"env steps {after[0]:,} -> {after[-1]:,} after minute {named_min:.1f}"
    )


def _growth(o: Outcome, target: Target, what: str, values: list[tuple[float, float]]) -> Check:
    title = f"{what} grow < {GROWTH_LIMIT_PERCENT:g}% from minute {o.baseline_minute:g} to the end"
    growth = growth_percent(values, o.baseline_minute)
    if growth is None:
        return check(target, title, None, f"too few samples from minute {o.baseline_minute:g} on")
    later = [v for m, v in values if m >= o.baseline_minute]
    first, last = statistics.median(later[:3]) / 1e6, statistics.median(later[-3:]) / 1e6
    detail = f"{growth:+.2f}% ({first:,.1f} -> {last:,.1f} MB, medians of 3)"
    return check(target, title, growth < GROWTH_LIMIT_PERCENT, detail)


def _ps_losses(o: Outcome) -> Check:
    target, title = Target.PS_LOSS, "each PS kill loses <= one checkpoint interval of updates, reported in the summary"
    if not o.ps_kills:
        return check(target, title, None, "no PS kill delivered")
    within = all(k.lost <= k.allowance for k in o.ps_kills)
    reported = o.summary_lost_updates > 0 or all(k.lost == 0 for k in o.ps_kills)
    each = ", ".join(f"{k.lost:,}/{k.allowance:,}" for k in o.ps_kills)
    return check(
        target,
        title,
        within and reported,
        f"lost/allowed {each}; the summary's lost_updates {o.summary_lost_updates:,}",
    )


def render_section(o: Outcome, checks: list[Check], header: str, command: str, machine: str) -> str:
    """The BENCHMARKS.md section: small (<= 2 KB); every sample is in --out-dir's table.md and samples.json."""
    every = max(1, round(len(o.samples) / SECTION_ROWS))
    kills = ", ".join(f"{n} {role}" for role, n in o.kills.items())
    final = "not run" if o.final_eval is None else f"{o.final_eval:.1f} +- {o.final_eval_std or 0:.1f} (std)"
    return "\n".join(
        [
            header,
            "",
            f"Machine: {machine}. Command: `{command}`. Kills: {kills}; {o.hangs_pulled} hung env; "
            f"{o.env_steps:,} env steps; fresh 100 episodes of `latest`: {final}.",
            "",
            render_table(o.samples, every),
            "",
            *[f"- {c.line()}" for c in checks],
        ]
    )


def write_plot(o: Outcome, path: str) -> str:
    """Return and RSS against time as a PNG at `path` -> a one-line note of what was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed in this venv"
    minutes = [s.minute for s in o.samples]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(minutes, [s.return_100 for s in o.samples], label="training return (last 100)")
    ax.plot(minutes, [s.eval_return for s in o.samples], label="evaluator screening", alpha=0.7)
    ax.set_xlabel("minute")
    ax.set_ylabel("return")
    rss = ax.twinx()
    rss.plot(minutes, [s.rss_bytes / 1e6 for s in o.samples], color="tab:red", label="session RSS (MB)")
    rss.set_ylabel("RSS (MB)")
    for at_s, role in o.delivered:
        ax.axvline(at_s / 60, color="black" if role == "ps" else "grey", linestyle=":", linewidth=0.8)
    fig.legend(loc="upper left", fontsize="small")
    ax.set_title("chaos soak: return and RSS (dotted: kills, black: the PS)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot: {path}"
