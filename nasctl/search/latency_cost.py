"""The latency cost (``--latency-table T --latency-target MS``): the final network's
latency on the runtime it deploys to, priced from a measured table (``nasctl latency
table``), and measured again for the found network on that runtime."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nasctl.search.cost import Cost, register
from nasctl.search.options import option
from nasctl.settings import NON_NEGATIVE, POSITIVE

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.latency.table import LatencyTable
    from nasctl.nets.units import Deployment, Unit
    from nasctl.search.config import SearchConfig


@dataclass(frozen=True)
class LatencyOptions:
    latency_table: str | None = option(None, "latency table of the deployment runtime "
                                       "(nasctl latency table); with it the search reports "
                                       "the found network's predicted and measured latency")
    latency_target: float | None = option(None, "latency budget in ms of the final network "
                                          "on the table's runtime: a differentiable penalty",
                                          POSITIVE)
    latency_weight: float = option(1.0, "weight of the latency penalty", NON_NEGATIVE)
    latency_repair: bool = option(True, "swap ops of the found network for cheaper ones of "
                                  "the same choice, by the table, until its prediction meets "
                                  "the target (recorded in the genotype's provenance)",
                                  flag="--latency-repair/--no-latency-repair")
    allow_foreign_table: bool = option(False, "use a table measured on another machine or "
                                       "runtime version (its measurement is then skipped)",
                                       flag="--allow-foreign-table/--no-allow-foreign-table")


@register
class LatencyCost(Cost):
    name = "latency"
    unit = "ms"
    Options = LatencyOptions

    @property
    def target(self) -> float | None:
        return self.config.latency_target  # type: ignore[no-any-return]

    @property
    def weight(self) -> float:
        return float(self.config.latency_weight)

    @property
    def repair(self) -> bool:
        return bool(self.config.latency_repair)

    def reports(self, cfg: SearchConfig) -> bool:
        return self.config.latency_table is not None

    def problems(self, cfg: SearchConfig) -> list[str]:
        if self.config.latency_table is None:
            return ["--latency-target needs --latency-table TABLE.json (build one with "
                    "nasctl latency table)"]
        from nasctl.errors import NasctlError

        try:
            self.table  # noqa: B018 - loads and checks the file before any work
        except NasctlError as exc:
            return [str(exc)]
        return []

    @cached_property
    def table(self) -> LatencyTable:
        from nasctl.latency.table import load_table

        return load_table(self.config.latency_table)

    def check_deployment(self, deployment: Deployment) -> None:
        """The table must price this deployment's network (its settings, always); a table
        from another machine or runtime is refused unless ``--allow-foreign-table``, and
        then the found network is not measured here."""
        from nasctl.latency.check import check_table
        from nasctl.latency.table import LatencyTableError, describe_settings

        have = dict(self.table.keys.get("settings") or {})
        want = json.loads(json.dumps(deployment.settings))  # tuples read back as lists
        have_ops, want_ops = have.pop("ops", None), want.pop("ops", None)
        if have != want:
            diffs = self.table.differences({"settings": {**want, "ops": have_ops}})
            raise LatencyTableError(
                f"{self.table.path} prices {describe_settings(have)}, but this search "
                f"deploys {describe_settings(want)} ({'; '.join(diffs)}); build a table for "
                "these settings, or give the table's with the --deploy-* flags")
        missing = sorted({u.key for u in deployment.catalogue()} - set(self.table.entries))
        if missing:
            extra = sorted(set(want_ops or ()) - set(have_ops or ()))
            what = f"the ops {', '.join(extra)}" if extra else f"{len(missing)} units"
            raise LatencyTableError(f"{self.table.path} has no entries for {what} (e.g. "
                                    f"{missing[0]!r}); build a table with these ops")
        self._local = not check_table(self.table, self.config.allow_foreign_table)

    def unit_cost(self, unit: Unit) -> float:
        return self.table.ms(unit)

    def measure(self, deployment: Deployment, genotype: Genotype) -> float | None:
        """Measured on this machine with the table's runtime, settings and precision, and
        scaled by the table's reference network to the host's speed when the table was
        made (as ``nasctl latency predict --measure``); None for a foreign table (this
        machine is not the one it describes)."""
        if not getattr(self, "_local", False):
            return None
        from nasctl.latency.check import reference_network, table_settings
        from nasctl.latency.measure import Timer, randomize_batchnorm

        net = deployment.network(genotype)
        randomize_batchnorm(net)
        # as `nasctl latency predict --measure`: with the table's reference network timed
        # beside it, scaled to the host's speed when the table was made
        reference = reference_network(self.table, deployment)
        with Timer(table_settings(self.table)) as timer:
            return timer.time_network(net, deployment.input_shape, reference).median_ms

    def describe(self, value: float) -> str:
        return f"{value:.3f} ms"

    def __getstate__(self) -> dict[str, Any]:  # the loaded table is not part of the settings
        state = dict(self.__dict__)
        state.pop("table", None)
        return state
