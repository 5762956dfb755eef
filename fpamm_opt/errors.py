"""The single exception family of fpamm-opt.

Every error the library raises on purpose derives from :class:`FpammError`; the CLI turns
these into one line on stderr and exit code 1 (see INTERFACE.md).
"""

from __future__ import annotations


class FpammError(Exception):
    """Base class of every deliberate fpamm-opt error."""


class InputError(FpammError):
    """Bad user input: a spec field, a time series or a CLI argument."""


class CaseError(InputError):
    """A network case that cannot be found, read or used."""


class SolverUnavailableError(FpammError):
    """The requested solver is not installed or not known to Pyomo."""


class SolverError(FpammError):
    """A solve failed in a way the retry path could not recover from."""


class InfeasibleError(FpammError):
    """A problem that must be feasible (by construction) was reported infeasible."""


class RunDirectoryError(FpammError):
    """A directory that is not a complete fpamm run directory."""


class ManifestError(RunDirectoryError):
    """A run manifest this version of fpamm-opt cannot read (its version is named)."""


class VerificationError(FpammError):
    """Raised by ``check_*`` helpers when a consistency check fails hard."""


def one_line_error(exc: BaseException) -> str:
    """First line of an exception's message (with its type unless it is an fpamm error).

    The form every command uses for "one clear line naming the problem".
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, FpammError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
