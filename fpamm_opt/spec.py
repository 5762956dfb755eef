"""Run specification: a TOML file -> a frozen :class:`RunSpec` tree.

Role
----
A run specification (``models/*.toml``) says which network, scenario, mechanism parameters,
solver, horizon and outputs a run uses. :func:`load_spec` reads it with :mod:`tomllib`,
applies ``section.key=value`` overrides (the CLI's ``--set``), resolves relative paths and
validates every field; :func:`spec_hash` fingerprints the resolved spec (it is repeated in the
manifest and in every Parquet file of the run directory).

Sections
--------
``[network]``
    ``case`` (required: pandapower name, ``simbench:<grid code>`` or a path), ``convention`` (matpower|powermodels), ``ratings``
    (auto|case|derived), ``rating_alpha``, ``rating_min_mw``, ``formulation`` (btheta|ptdf,
    the DC-OPF description the allocator builds). A relative case path is resolved
    against the spec file's directory first, then the current directory; the resolved spec
    stores an absolute path (so the manifest is runnable on its own; the hash is therefore
    stable per checkout, not across machines). A pandapower case name is kept as is.
``[scenario]``
    :class:`~fpamm_opt.scenario.ScenarioConfig` fields; relative file paths are resolved
    against the spec file's directory. ``tier_targets`` and ``weak_node`` are recorded there for
    ``verify`` and ``report``. ``source = "simbench"`` with ``grid`` (and ``capacity_scale``,
    ``forced_outage_rate``, ``mean_repair_hours``) takes a SimBench grid's own profiles
    (:mod:`fpamm_opt.scenarios_simbench`).
``[mechanism]``
    A plain dict passed through to ``fpamm_opt.mechanism.config.MechanismConfig.from_dict``,
    which validates the values; unknown keys are rejected here already (against its fields).
``[solver]``
    ``name`` (default ``highs``), ``time_limit_s``, ``options`` (a table passed to the solver),
    ``engine`` (auto|pyomo|highs, :class:`fpamm_opt.problem.EngineKind`), ``qp_method``
    (auto|kkt|solver, :class:`fpamm_opt.problem.QPMethod`: how the QP rule's tier problems
    are solved).
``[run]``
    ``intervals``, ``seed``, ``policy`` (fpamm|equal|lmp,
    :class:`fpamm_opt.mechanism.config.Policy`), ``flush_every``, ``name``.
``[outputs]``
    ``branches``, ``generators`` (write those tables or not).
``[[extensions]]``
    An array of tables, each ``{function = "package.module:callable", ...kwargs}`` or
    ``{function = "path/to/file.py:callable", ...kwargs}`` (a relative file path is resolved
    against the spec file's directory and stored absolute). The callable is called as
    ``callable(model, net, **kwargs)`` after the model's blocks are built (the extension seam of
    :func:`fpamm_opt.problem.build_model`); :mod:`fpamm_opt.extensions` imports it. Here only
    the target's form and the arguments' values (plain TOML values, no dates) are checked;
    importing and the call signature are checked by the run's validation phase.

Overrides
---------
``"section.key=value"``: the value is parsed as a TOML value (``0.1``, ``true``, ``[1, 2]``,
``"text"``) and falls back to the raw string (``ratings=derived``). Deeper keys address
tables (``solver.options.presolve=off``); ``extensions.<i>.<key>=value`` sets an argument of
the ``i``-th extension. Unknown sections or keys raise :class:`~fpamm_opt.errors.InputError`
naming them.

No Pyomo here.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fpamm_opt.errors import InputError
from fpamm_opt.extensions import parse_target
from fpamm_opt.mechanism.config import MechanismConfig, Policy
from fpamm_opt.network import (
    PANDAPOWER_CASES,
    Convention,
    NetworkData,
    RatingPolicy,
    load_network,
)
from fpamm_opt.scenario import ScenarioConfig

#: ``[network].formulation`` values (``fpamm_opt.blocks.dcopf.Formulation``; not imported
#: here because that module imports Pyomo).
FORMULATIONS: tuple[str, ...] = ("btheta", "ptdf")

#: ``[solver].engine`` values (``fpamm_opt.problem.EngineKind``).
ENGINES: tuple[str, ...] = ("auto", "pyomo", "highs")

#: ``[solver].qp_method`` values (``fpamm_opt.problem.QPMethod``).
QP_METHODS: tuple[str, ...] = ("auto", "kkt", "solver")

SECTIONS: tuple[str, ...] = (
    "network",
    "scenario",
    "mechanism",
    "solver",
    "run",
    "outputs",
    "extensions",
)


# ---------------------------------------------------------------- field helpers
def _float(where: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    if positive and v <= 0:
        raise InputError(f"{where}: must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise InputError(f"{where}: must be >= 0, got {value!r}")
    return v


def _int(where: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{where}: must be >= {minimum}, got {value!r}")
    return int(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {value!r}")
    return value


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _choice(where: str, cls: type[enum.StrEnum], value: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise InputError(
            f"{where}: {value!r} is not one of {', '.join(m.value for m in cls)}"
        ) from None


def _one_of(where: str, choices: tuple[str, ...], value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise InputError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value.strip().lower()


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a table, got {value!r}")
    return copy.deepcopy(dict(value))


def _json_value(where: str, value: Any) -> Any:
    """A plain TOML value (string, bool, int, finite float, arrays and tables of those)."""
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: expected a finite number, got {value!r}")
        return value
    if isinstance(value, list | tuple):
        return [_json_value(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _json_value(f"{where}.{k}", v) for k, v in value.items()}
    raise InputError(
        f"{where}: unsupported {type(value).__name__} value {value!s} "
        "(use strings, numbers, booleans, arrays, tables)"
    )


def _plain(value: Any) -> Any:
    """JSON-friendly copy: enums -> values, paths -> str, tuples -> lists, dicts recursed."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class NetworkSpec:
    """``[network]``: which case and how it is modelled."""

    case: str = "case14"
    convention: Convention = Convention.MATPOWER
    ratings: RatingPolicy = RatingPolicy.AUTO
    rating_alpha: float = 1.2
    rating_min_mw: float = 5.0
    formulation: str = "btheta"

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(
            self,
            "case",
            _str("network.case", str(self.case) if isinstance(self.case, Path) else self.case),
        )
        put(self, "convention", _choice("network.convention", Convention, self.convention))
        put(self, "ratings", _choice("network.ratings", RatingPolicy, self.ratings))
        put(self, "rating_alpha", _float("network.rating_alpha", self.rating_alpha, positive=True))
        put(self, "formulation", _one_of("network.formulation", FORMULATIONS, self.formulation))
        put(self, "rating_min_mw", _float("network.rating_min_mw", self.rating_min_mw, nonneg=True))

    def load(self) -> NetworkData:
        """The :class:`~fpamm_opt.network.NetworkData` this section describes."""
        return load_network(
            self.case,
            convention=self.convention,
            ratings=self.ratings,
            rating_alpha=self.rating_alpha,
            rating_min_mw=self.rating_min_mw,
        )


@dataclass(frozen=True)
class SolverSection:
    """``[solver]``: solver name, time limit (s), solver options, engine and QP method.

    What the spec file says; :class:`fpamm_opt.solvers.SolverSpec` is the solver a run or a
    ``solver=`` argument resolves to (possibly a Pyomo solver object of the user's).
    """

    name: str = "highs"
    time_limit_s: float = 10.0
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    engine: str = "auto"
    qp_method: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _str("solver.name", self.name))
        object.__setattr__(self, "engine", _one_of("solver.engine", ENGINES, self.engine))
        object.__setattr__(
            self, "qp_method", _one_of("solver.qp_method", QP_METHODS, self.qp_method)
        )
        object.__setattr__(
            self, "time_limit_s", _float("solver.time_limit_s", self.time_limit_s, positive=True)
        )
        options = _table("solver.options", self.options)
        object.__setattr__(self, "options", _json_value("solver.options", options))


@dataclass(frozen=True)
class RunSection:
    """``[run]``: horizon, seed, policy, Parquet flush interval, optional name."""

    intervals: int = 5000
    seed: int = 0
    policy: Policy = Policy.FPAMM
    flush_every: int = 500
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "intervals", _int("run.intervals", self.intervals, minimum=1))
        object.__setattr__(self, "seed", _int("run.seed", self.seed, minimum=0))
        object.__setattr__(self, "policy", _choice("run.policy", Policy, self.policy))
        object.__setattr__(
            self, "flush_every", _int("run.flush_every", self.flush_every, minimum=1)
        )
        if self.name is not None:
            object.__setattr__(self, "name", _str("run.name", self.name))


@dataclass(frozen=True)
class OutputsSpec:
    """``[outputs]``: optional tables."""

    branches: bool = True
    generators: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", _bool("outputs.branches", self.branches))
        object.__setattr__(self, "generators", _bool("outputs.generators", self.generators))

    def tables(self) -> tuple[str, ...]:
        """Names of the run-directory tables to write, in INTERFACE.md order."""
        out = ["intervals", "nodes"]
        if self.branches:
            out.append("branches")
        if self.generators:
            out.append("generators")
        out += ["iterations", "events"]
        return tuple(out)


@dataclass(frozen=True)
class ExtensionSpec:
    """One ``[[extensions]]`` entry: the callable's target and its keyword arguments.

    Attributes
    ----------
    function : str
        ``"package.module:callable"`` or ``"path/file.py:callable"`` (form checked here).
    kwargs : dict
        Every other key of the entry, passed as ``callable(model, net, **kwargs)``.
    """

    function: str
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        parse_target(self.function, "extensions.function")
        kwargs = _table("extensions", self.kwargs)
        for key in kwargs:
            if not isinstance(key, str) or not key.isidentifier() or key == "function":
                raise InputError(f"extensions: argument name {key!r} is not a Python identifier")
        object.__setattr__(self, "kwargs", _json_value("extensions", kwargs))

    @classmethod
    def from_entry(
        cls, entry: Any, index: int, base_dir: Path | str | None = None
    ) -> ExtensionSpec:
        """Build from a TOML table; a relative ``file.py`` target is made absolute."""
        where = f"extensions[{index}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{where}: expected a table {{function = ..., ...}}, got {entry!r}")
        data = dict(entry)
        if "function" not in data:
            raise InputError(f"{where}: missing key 'function' ('module:callable')")
        text = data.pop("function")
        target = parse_target(text, f"{where}.function")
        if target.is_file and base_dir is not None and not Path(target.module).is_absolute():
            try:
                text = f"{(Path(base_dir) / target.module).resolve()}:{target.attr}"
            except (OSError, ValueError, RuntimeError) as exc:
                raise InputError(f"{where}.function: bad path {target.module!r} ({exc})") from None
        for key in data:
            if not isinstance(key, str) or not key.isidentifier():
                raise InputError(f"{where}: argument name {key!r} is not a Python identifier")
        return cls(function=text.strip(), kwargs=_json_value(where, data))

    def to_dict(self) -> dict[str, Any]:
        """``{"function": ..., **kwargs}`` (the TOML entry form)."""
        return {"function": self.function, **copy.deepcopy(self.kwargs)}


def _extensions(value: Any, base_dir: Path | str | None) -> tuple[ExtensionSpec, ...]:
    if isinstance(value, Mapping) or not isinstance(value, list | tuple):
        raise InputError(
            f"spec: extensions must be an array of tables ([[extensions]]), got {value!r}"
        )
    return tuple(ExtensionSpec.from_entry(e, i, base_dir) for i, e in enumerate(value))


_SECTION_CLASSES: dict[str, type] = {
    "network": NetworkSpec,
    "solver": SolverSection,
    "run": RunSection,
    "outputs": OutputsSpec,
}


@dataclass(frozen=True)
class RunSpec:
    """A resolved, validated run specification.

    Attributes
    ----------
    network, scenario, solver, run, outputs
        Typed sections.
    mechanism : dict
        Plain dict, validated by ``MechanismConfig.from_dict`` (not here).
    extensions : tuple of ExtensionSpec
        ``[[extensions]]`` entries, in order (resolved by :mod:`fpamm_opt.extensions`).
    source : str or None
        The spec file it was loaded from (not part of :meth:`to_dict` nor of the hash).
    """

    network: NetworkSpec = field(default_factory=NetworkSpec)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    mechanism: dict[str, Any] = field(default_factory=dict, hash=False)
    solver: SolverSection = field(default_factory=SolverSection)
    run: RunSection = field(default_factory=RunSection)
    outputs: OutputsSpec = field(default_factory=OutputsSpec)
    extensions: tuple[ExtensionSpec, ...] = ()
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Plain values only (no dates, no NaN): the spec is hashed and written as JSON before
        # MechanismConfig validates the values themselves.
        mechanism = _json_value("mechanism", _table("mechanism", self.mechanism))
        object.__setattr__(self, "mechanism", mechanism)
        exts = tuple(self.extensions)
        for e in exts:
            if not isinstance(e, ExtensionSpec):
                raise InputError(f"spec: extensions must be ExtensionSpec entries, got {e!r}")
        object.__setattr__(self, "extensions", exts)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every section (JSON-friendly); ``from_dict`` inverts it."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            sec = getattr(self, name)
            if name == "scenario":
                out[name] = sec.to_dict()
            elif name == "mechanism":
                out[name] = _plain(sec)
            elif name == "extensions":
                out[name] = [e.to_dict() for e in sec]
            else:
                out[name] = {f.name: _plain(getattr(sec, f.name)) for f in fields(sec)}
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: Path | str | None = None, source: str | None = None
    ) -> RunSpec:
        """Build and validate from a nested mapping (a parsed TOML document).

        Parameters
        ----------
        data
            ``{section: {key: value}}``; missing sections and keys take their defaults.
        base_dir
            Directory against which relative paths are resolved (the spec file's directory).
        source
            Recorded as :attr:`source`.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"spec: expected a table of sections, got {data!r}")
        for key, value in data.items():
            if key not in SECTIONS:
                raise InputError(f"spec: unknown section [{key}] (known: {', '.join(SECTIONS)})")
            if key == "extensions":
                continue
            if not isinstance(value, Mapping):
                raise InputError(f"spec: [{key}] must be a table, got {value!r}")
        kwargs: dict[str, Any] = {"source": source}
        for name, klass in _SECTION_CLASSES.items():
            table = dict(data.get(name, {}))
            known = {f.name for f in fields(klass)}
            for key in table:
                if key not in known:
                    raise InputError(
                        f"spec: unknown key {name}.{key} (known: {', '.join(sorted(known))})"
                    )
            if name == "network":
                if "case" not in table:
                    raise InputError("spec: missing network.case (a pandapower name or a file)")
                table["case"] = resolve_case(table["case"], base_dir)
            kwargs[name] = klass(**table)
        kwargs["scenario"] = ScenarioConfig.from_dict(
            dict(data.get("scenario", {})), base_dir=base_dir
        )
        mech = _table("mechanism", data.get("mechanism", {}))
        _check_mechanism_keys(mech)
        kwargs["mechanism"] = mech
        kwargs["extensions"] = _extensions(data.get("extensions", []), base_dir)
        return cls(**kwargs)

    def replace(self, **sections: Any) -> RunSpec:
        """A copy with whole sections replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **sections)


def resolve_case(case: Any, base_dir: Path | str | None) -> str:
    """Resolve ``[network].case``: a pandapower name stays; a relative path is looked up
    against ``base_dir`` first, then the current directory, and made absolute if found."""
    text = _str("network.case", str(case) if isinstance(case, Path) else case)
    if "\x00" in text:
        raise InputError(f"network.case: {text!r} contains a NUL character")
    if text in PANDAPOWER_CASES:
        return text
    p = Path(text)
    if p.is_absolute():
        return text
    if base_dir is not None and (Path(base_dir) / p).exists():
        return str((Path(base_dir) / p).resolve())
    if p.exists():
        return str(p.resolve())
    return text  # left to the loader (shipped data/ files, or a clear CaseError)


def _check_mechanism_keys(mech: Mapping[str, Any]) -> None:
    """Reject unknown ``[mechanism]`` keys early (values are validated by MechanismConfig)."""
    known = {f.name for f in fields(MechanismConfig)}
    for key in mech:
        if key not in known:
            raise InputError(
                f"spec: unknown key mechanism.{key} (known: {', '.join(sorted(known))})"
            )


# ---------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into its key path and parsed value.

    The value is parsed as TOML (``1``, ``0.5``, ``true``, ``[1, 2]``, ``"s"``) and falls back
    to the raw string.
    """
    if not isinstance(text, str) or "=" not in text:
        raise InputError(f"override {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    path = [part.strip() for part in key.strip().split(".")]
    if len(path) < 2 or any(not part for part in path):
        raise InputError(f"override {text!r}: expected section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a deep copy of ``data`` with every override applied (unknown names raise)."""
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        section = path[0]
        if section not in SECTIONS:
            raise InputError(
                f"override {text!r}: unknown section {section!r} (known: {', '.join(SECTIONS)})"
            )
        if section == "extensions":
            _override_extension(out, text, path, value)
            continue
        if section in _SECTION_CLASSES or section == "scenario":
            klass = ScenarioConfig if section == "scenario" else _SECTION_CLASSES[section]
            known = {f.name for f in fields(klass)}
            if path[1] not in known:
                raise InputError(f"override {text!r}: unknown key {section}.{path[1]}")
            table_field = section == "solver" and path[1] == "options"
            if len(path) > 2 and not table_field:
                raise InputError(f"override {text!r}: {section}.{path[1]} is not a table")
        node = out.setdefault(section, {})
        for part in path[1:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise InputError(f"override {text!r}: {part!r} is not a table")
            node = nxt
        node[path[-1]] = value
    return out


def _override_extension(data: dict[str, Any], text: str, path: list[str], value: Any) -> None:
    """``extensions.<i>.<key>=value``: set one argument (or the function) of entry ``i``."""
    entries = data.get("extensions")
    if len(path) != 3 or not path[1].isdigit():
        raise InputError(f"override {text!r}: expected extensions.<index>.<key>=value")
    i = int(path[1])
    if not isinstance(entries, list) or i >= len(entries) or not isinstance(entries[i], dict):
        n = len(entries) if isinstance(entries, list) else 0
        raise InputError(f"override {text!r}: no extension {i} (the spec has {n})")
    entries[i][path[2]] = value


# ---------------------------------------------------------------- loading and hashing
def read_toml(path: Path | str) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is one :class:`InputError` line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"spec {p}: file not found")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"spec {p}: invalid TOML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"spec {p}: cannot read ({type(exc).__name__}: {exc})") from None


def load_spec(path: Path | str, overrides: Iterable[str] = ()) -> RunSpec:
    """Load, override, resolve and validate a run specification.

    Parameters
    ----------
    path
        TOML file.
    overrides
        ``"section.key=value"`` strings, applied in order after the file.

    Returns
    -------
    RunSpec
    """
    p = Path(path)
    data = apply_overrides(read_toml(p), overrides)
    return RunSpec.from_dict(data, base_dir=p.resolve().parent, source=str(p))


def as_spec(spec: RunSpec | str | Path, overrides: Iterable[str] = ()) -> RunSpec:
    """``spec`` loaded (a TOML path) or taken as is, with ``section.key=value`` overrides."""
    overrides = tuple(overrides)
    if isinstance(spec, RunSpec):
        if not overrides:
            return spec
        return RunSpec.from_dict(apply_overrides(spec.to_dict(), overrides), source=spec.source)
    return load_spec(spec, overrides)


def canonical_json(spec: RunSpec) -> str:
    """Canonical JSON of ``spec.to_dict()`` (sorted keys, no whitespace)."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec_hash(spec: RunSpec) -> str:
    """First 16 hex characters of the SHA-256 of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()[:16]


__all__ = [
    "SECTIONS",
    "ExtensionSpec",
    "NetworkSpec",
    "OutputsSpec",
    "Policy",
    "RunSection",
    "RunSpec",
    "SolverSection",
    "apply_overrides",
    "canonical_json",
    "load_spec",
    "parse_override",
    "read_toml",
    "resolve_case",
    "spec_hash",
]
