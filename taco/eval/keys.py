"""The flat metric keys of ``metrics.json`` (one owner for their spelling and parsing).

```
<task>/rate_<r>/<compressor>/<metric>                            e.g. code/rate_0.33/trained/bleu
<task>/rate_<r>/trained_vs_<other>/<metric>/{delta,ci_low,ci_high}
<task>/rate_<r>/{rows,unscorable}                                 test rows scored / excluded
<task>/recommended_rate                                           null when no rate qualifies
```

Flat keys let ``dvc metrics diff`` compare any two runs key by key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from taco.errors import UserError

VS = "trained_vs_"
CI_PARTS = ("delta", "ci_low", "ci_high")
_RATE = re.compile(r"^rate_(\d+(?:\.\d+)?)$")


class MetricsError(UserError, ValueError):
    """A metrics.json that does not fit the expected keys (wrong task, missing rows)."""


def rate_tag(rate: float) -> str:
    """``rate_0.33`` for 0.33 (shortest exact spelling: 0.5 -> ``rate_0.5``)."""
    return f"rate_{rate:g}"


def key(task: str, rate: float, compressor: str, metric: str) -> str:
    """``<task>/rate_<r>/<compressor>/<metric>``."""
    return f"{task}/{rate_tag(rate)}/{compressor}/{metric}"


def ci_key(task: str, rate: float, other: str, metric: str, part: str) -> str:
    """``<task>/rate_<r>/trained_vs_<other>/<metric>/<part>`` (part: delta, ci_low, ci_high)."""
    return f"{task}/{rate_tag(rate)}/{VS}{other}/{metric}/{part}"


def count_key(task: str, rate: float, what: str) -> str:
    """``<task>/rate_<r>/<what>`` (``rows`` scored, ``unscorable`` excluded)."""
    return f"{task}/{rate_tag(rate)}/{what}"


def recommended_key(task: str) -> str:
    return f"{task}/recommended_rate"


def tasks_of(metrics: Mapping[str, Any]) -> set[str]:
    """The task prefixes of the keys."""
    return {k.split("/", 1)[0] for k in metrics if "/" in k}


def check_task(metrics: Mapping[str, Any], task: str, where: str) -> None:
    """Raise MetricsError unless ``metrics`` holds keys of ``task`` (one clear line)."""
    found = tasks_of(metrics)
    if task not in found:
        other = ", ".join(sorted(found)) or "no task"
        raise MetricsError(
            f"{where}: the metrics are for {other}, not base.task {task!r} "
            "(rerun `taco evaluate` for this task)"
        )


def rates_of(metrics: Mapping[str, Any], task: str) -> list[float]:
    """Rates evaluated for ``task``, ascending."""
    rates = set()
    for k in metrics:
        parts = k.split("/")
        if len(parts) > 2 and parts[0] == task and (m := _RATE.match(parts[1])):
            rates.add(float(m.group(1)))
    return sorted(rates)


def compressors_of(metrics: Mapping[str, Any], task: str, rate: float) -> list[str]:
    """Compressors with metrics at ``rate`` (in file order; comparisons excluded)."""
    prefix = f"{task}/{rate_tag(rate)}/"
    seen: dict[str, None] = {}
    for k in metrics:
        if k.startswith(prefix):
            parts = k[len(prefix) :].split("/")
            if len(parts) == 2 and not parts[0].startswith(VS):
                seen[parts[0]] = None
    return list(seen)


def value(metrics: Mapping[str, Any], k: str) -> float:
    """A finite float of ``metrics[k]``, NaN when absent or null."""
    v = metrics.get(k)
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return math.nan
    return float(v)
