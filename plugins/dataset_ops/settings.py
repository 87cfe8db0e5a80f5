"""The suite's configuration, resolved at the task boundary: Variables, Connections and Params.

A DAG task body (or a command-line tool, or the API server plugin) calls this module and hands
what it returns to the library, whose functions take explicit arguments (roots, ``Storage``
objects, the typed Param objects below) and never read a Variable or a Param dict themselves.
Only this module and the DAG files name Params; only this module reads Variables.

Variables (names are the constants below; the README keeps the table)::

    dataset_ops_storage_root  the object storage root      default $AIRFLOW_HOME/dataset-ops-storage
    staging_root              staged uploads (uploads/...) default s3://training-data/
    datalake_root             the microservice data lake   default datalake/ below the storage root
    imdb_base_url             folder URL of the IMDb dumps default https://datasets.imdbws.com/
    inference_images_root     the inference image store   required (no default)
    inference_registry_root   registered datasets          default registry/ below the storage root

A Variable set to the empty string counts as not set.

**One rule for every root** (:func:`open_root`): a local path (or ``file://`` URI) opens a local
folder; ``s3://bucket/prefix`` goes through the Airflow Connection ``aws_default`` and, when that
Connection does not exist, opening the root raises :class:`MissingConnection` (a
:class:`~dataset_ops.errors.PermanentError`: the task fails at its first try) naming the
Connection and the Variable, and saying how to fix it: create the Connection (an ``aws``
Connection without credentials is enough to use boto3's default chain, e.g. an instance role), or
set the Variable to a local folder. Nothing falls back silently to another place.

The data lake's default is ``datalake/`` below the storage root, so it follows the storage: a
local folder in ``make demo`` and in the tests (``$AIRFLOW_HOME/dataset-ops-storage/datalake``
when no storage Variable is set), the storage's bucket in a deployment whose storage is on S3.
Set ``datalake_root`` (e.g. ``s3://inventario-datalake/``) for a lake of its own.

Reading a Variable (:func:`variable`) or checking a Connection (:func:`connection_exists`) works
the same inside a task and outside one: ``AIRFLOW_VAR_<KEY>`` / ``AIRFLOW_CONN_<ID>`` in the
environment, then the secrets backends in Airflow's order. Inside a task (a task runner talking
to its supervisor) that is the Execution API (the metadata database behind it); in a
command-line tool (``python -m dataset_ops.upload``, ``python -m dataset_ops.staging``) and in
the API server it is the metadata database of the configured Airflow home (``AIRFLOW_HOME`` /
``sql_alchemy_conn``), the one the UI edits: a Variable set in the UI is what the tools use too.
A backend that fails (a database not migrated or not reachable) is :class:`VariableUnavailable`
/ :class:`ConnectionUnavailable` with its reason, never a silent default.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from dataset_ops.errors import NotFound
from dataset_ops.imdb.datasets import IMDB_DEFAULT_BASE_URL
from dataset_ops.storage.s3 import AWS_CONN_ID  # the Connection every s3:// root goes through

if TYPE_CHECKING:
    from dataset_ops.storage import Storage

STORAGE_ROOT_VARIABLE = "dataset_ops_storage_root"
#: Below ``$AIRFLOW_HOME`` (``~/airflow`` when unset): the storage root's default.
DEFAULT_STORAGE_FOLDER = "dataset-ops-storage"
STAGING_ROOT_VARIABLE = "staging_root"
DEFAULT_STAGING_ROOT = "s3://training-data/"
DATALAKE_ROOT_VARIABLE = "datalake_root"
#: Below the storage root: the data lake's default.
DEFAULT_DATALAKE_FOLDER = "datalake"
IMDB_BASE_URL_VARIABLE = "imdb_base_url"
IMAGES_ROOT_VARIABLE = "inference_images_root"
REGISTRY_ROOT_VARIABLE = "inference_registry_root"
#: Below the storage root: the inference registry's default.
DEFAULT_REGISTRY_FOLDER = "registry"


class VariableUnavailable(RuntimeError):
    """A Variable could not be read: a secrets backend it may live in (the metadata database,
    the Execution API, an external backend) failed; the message names the Variable, where it was
    looked for and the reason."""


class ConnectionUnavailable(RuntimeError):
    """Whether a Connection exists could not be told: a secrets backend failed (the message names
    the Connection and the reason)."""


class MissingVariable(NotFound):
    """A required Variable is not set (the message names it and gives an example value)."""


class MissingConnection(NotFound):
    """An ``s3://`` root whose Connection does not exist.

    :param root: the root URI. :param conn_id: the missing Connection.
    :param variable: the Variable the root comes from (None: given explicitly).
    """

    def __init__(self, root: str, conn_id: str, variable: str | None):
        where = f"the Variable {variable}" if variable else "given explicitly"
        fix_variable = (
            f"or set the Variable {variable} to a local folder (e.g. /data/{variable})"
            if variable
            else "or use a local folder instead"
        )
        super().__init__(
            f"storage root {root} ({where}) is on S3, which is reached through the Airflow "
            f"Connection {conn_id}, and no Connection {conn_id} exists: create it (Admin > "
            f"Connections, type aws, or AIRFLOW_CONN_{conn_id.upper()}; without credentials it "
            f"uses boto3's default chain, e.g. an instance role), {fix_variable}"
        )
        self.root, self.conn_id, self.variable = root, conn_id, variable

    def __reduce__(self):  # picklable (Exception pickles ``args`` only)
        return type(self), (self.root, self.conn_id, self.variable)


def _in_task() -> bool:
    """Whether this process runs a task (its supervisor's channel is set up)."""
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _secrets_backends() -> list:
    """The secrets backends this process reads, in Airflow's order: inside a task the worker's
    chain (environment, external backends, the Execution API); outside one the server's chain
    (environment, external backends, the metadata database of the configured Airflow home)."""
    if _in_task():
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        return ensure_secrets_backend_loaded()
    from airflow.configuration import ensure_secrets_loaded

    return ensure_secrets_loaded()


def _lookup(kind: str, name: str) -> tuple[Any, list[str]]:
    """``(value, failures)``: the first backend's answer for the Variable (``kind`` "variable") or
    Connection ("connection") ``name`` (None: none has it) and why the backends that failed did.

    Unlike Airflow's own getters, a failing backend is not taken for "not set"."""
    failures = []
    for backend in _secrets_backends():
        try:
            if kind == "variable":
                found = backend.get_variable(key=name)
            else:
                found = backend.get_connection(conn_id=name)
        except Exception as exc:  # a database that is not migrated or not reachable, access denied
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            failures.append(f"{type(backend).__name__}: {type(exc).__name__}: {reason}")
            continue
        if found is not None:
            return found, failures
    return None, failures


def _where() -> str:
    """Where the backends read from, for messages (no credentials)."""
    if _in_task():
        return "the Execution API"
    from airflow.configuration import conf

    database = conf.get("database", "sql_alchemy_conn").split("@")[-1]
    return f"the Airflow metadata database ({database})"


def variable(key: str, default: Any = None) -> Any:
    """The Airflow Variable ``key`` (a string), or ``default`` when it is set nowhere.

    Order: ``AIRFLOW_VAR_<KEY>``; then the secrets backends in Airflow's order: inside a task the
    external backends and the Execution API (the metadata database behind it); outside a task
    (a command-line tool, the API server) the external backends and the metadata database of the
    configured Airflow home, the one the UI edits.

    :raises VariableUnavailable: no backend has the Variable and one of them failed (a metadata
        database that is not migrated or not reachable, access denied): the Variable cannot be
        told unset, so its default is not used. A Variable that is simply not set is not an error.
    """
    env = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
    if env is not None:
        return env
    value, failures = _lookup("variable", key)
    if value is not None:
        from airflow.sdk.log import mask_secret

        mask_secret(value, key)  # as Variable.get does (values of sensitive-looking keys)
        return value
    if failures:
        raise VariableUnavailable(
            f"the Variable {key} cannot be read from {_where()}: {'; '.join(failures)}; set "
            f"AIRFLOW_VAR_{key.upper()} or give the value on the command line"
        )
    return default


def _variable_or(key: str, default: str | None) -> str | None:
    """:func:`variable`, with an empty value counted as not set."""
    return variable(key, None) or default


def connection_exists(conn_id: str) -> bool:
    """Whether the Airflow Connection ``conn_id`` is defined where this process looks for it.

    ``AIRFLOW_CONN_<ID>`` counts everywhere; then the secrets backends of :func:`variable`'s
    order (inside a task the Execution API, as ``airflow.sdk.Connection.get`` asks; outside one
    the metadata database of the configured Airflow home, as the API server's ``BaseHook`` does).

    :raises ConnectionUnavailable: no backend has it and one of them failed.
    """
    if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
        return True
    found, failures = _lookup("connection", conn_id)
    if found is not None:
        return True
    if failures:
        raise ConnectionUnavailable(
            f"whether the Connection {conn_id} exists cannot be told from {_where()}: {'; '.join(failures)}"
        )
    return False


def open_root(root: str, variable_name: str | None, aws_conn_id: str = AWS_CONN_ID) -> Storage:
    """Storage for ``root`` by the one rule of the suite: a local path or ``file://`` URI opens a
    local folder; ``s3://bucket[/prefix]`` needs the Connection ``aws_conn_id``.

    :param root: the root URI or folder.
    :param variable_name: the Variable ``root`` came from, named in the error (None: explicit).
    :raises MissingConnection: an ``s3://`` root and no Connection ``aws_conn_id``.
    :raises ValueError: an ``s3://`` root without a bucket, or another URL scheme.
    """
    from dataset_ops.storage import open_storage

    if root.startswith("s3://") and not connection_exists(aws_conn_id):
        raise MissingConnection(root, aws_conn_id, variable_name)
    return open_storage(root, aws_conn_id)


def _join(root: str, folder: str) -> str:
    """``folder`` below ``root`` (a URI or a local path)."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root):
        return root.rstrip("/") + "/" + folder
    return posixpath.join(root, folder)


@dataclass(frozen=True)
class Root:
    """A storage root as configured: where it is and which Variable it comes from.

    :param uri: ``s3://bucket/prefix``, ``file:///path`` or a local folder path.
    :param variable: the Variable that sets it (named in errors); None when given explicitly.
    :param aws_conn_id: the Connection an ``s3://`` root goes through.
    """

    uri: str
    variable: str | None
    aws_conn_id: str = AWS_CONN_ID

    @property
    def is_s3(self) -> bool:
        """Whether the root is on S3."""
        return self.uri.startswith("s3://")

    def join(self, folder: str) -> str:
        """The URI (or path) of ``folder`` below this root."""
        return _join(self.uri, folder)

    def check(self) -> Root:
        """This root, once its Connection is known to exist (for callers that take a root URI
        rather than an opened storage).

        :raises MissingConnection: an ``s3://`` root and no Connection :attr:`aws_conn_id`.
        """
        if self.is_s3 and not connection_exists(self.aws_conn_id):
            raise MissingConnection(self.uri, self.aws_conn_id, self.variable)
        return self

    def open(self) -> Storage:
        """The root's :class:`~dataset_ops.storage.Storage` (see :func:`open_root`).

        :raises MissingConnection: an ``s3://`` root and no Connection :attr:`aws_conn_id`.
        """
        return open_root(self.uri, self.variable, self.aws_conn_id)

    def __str__(self) -> str:
        return self.uri


def default_storage_root() -> str:
    """The storage root's default: ``$AIRFLOW_HOME/dataset-ops-storage`` (``~/airflow`` when
    ``AIRFLOW_HOME`` is unset), a local folder."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, DEFAULT_STORAGE_FOLDER)


def storage_root() -> Root:
    """The Variable ``dataset_ops_storage_root``, else :func:`default_storage_root`.

    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    return Root(_variable_or(STORAGE_ROOT_VARIABLE, default_storage_root()), STORAGE_ROOT_VARIABLE)


def storage() -> Storage:
    """The opened storage root (``storage_root().open()``).

    :raises MissingConnection: an ``s3://`` root and no Connection ``aws_default``.
    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    return storage_root().open()


def staging_root(explicit: str | None = None) -> Root:
    """The staging root: ``explicit`` (e.g. a ``--root`` option), else the Variable
    ``staging_root``, else ``s3://training-data/``.

    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    if explicit:
        return Root(explicit, None)
    return Root(_variable_or(STAGING_ROOT_VARIABLE, DEFAULT_STAGING_ROOT), STAGING_ROOT_VARIABLE)


def datalake_root(explicit: str | None = None) -> Root:
    """The data lake: ``explicit`` (e.g. a ``--root`` option), else the Variable
    ``datalake_root``, else ``datalake/`` below :func:`storage_root` (see the module docstring).

    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    if explicit:
        return Root(explicit, None)
    configured = _variable_or(DATALAKE_ROOT_VARIABLE, None)
    if configured:
        return Root(configured, DATALAKE_ROOT_VARIABLE)
    return Root(storage_root().join(DEFAULT_DATALAKE_FOLDER), DATALAKE_ROOT_VARIABLE)


def imdb_base_url(param_value: str | None = None) -> str:
    """Where the IMDb dumps are: the Param ``base_url`` when set, else the Variable
    ``imdb_base_url``, else ``https://datasets.imdbws.com/``.

    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    if param_value:
        return param_value
    return _variable_or(IMDB_BASE_URL_VARIABLE, IMDB_DEFAULT_BASE_URL)


def inference_images_root() -> Root:
    """The inference image store, the Variable ``inference_images_root`` (required).

    :raises MissingVariable: the Variable is not set (names it).
    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    root = _variable_or(IMAGES_ROOT_VARIABLE, None)
    if not root:
        raise MissingVariable(
            f"the Variable {IMAGES_ROOT_VARIABLE} is not set: set it to the image store "
            "(e.g. s3://bucket/images/ or a local folder)"
        )
    return Root(root, IMAGES_ROOT_VARIABLE)


def inference_registry_root() -> Root:
    """The inference registry: the Variable ``inference_registry_root``, else ``registry/``
    below :func:`storage_root`.

    :raises VariableUnavailable: outside a task, the metadata database cannot be read."""
    root = _variable_or(REGISTRY_ROOT_VARIABLE, None)
    return Root(root or storage_root().join(DEFAULT_REGISTRY_FOLDER), REGISTRY_ROOT_VARIABLE)


# --- Params: one typed object per workflow, built from the DAG run's Params -------------------
#: Extra keys of the Apify Connection that tune the media downloads -> ``MediaDownloader`` arguments.
APIFY_MEDIA_EXTRAS = {
    "media_workers": ("workers", int),
    "media_max_bytes": ("max_bytes", int),
    "media_connect_timeout": ("connect_timeout", float),
    "media_read_timeout": ("read_timeout", float),
    "media_retries": ("retries", int),
    "media_backoff_factor": ("backoff_factor", float),
}


def apify_media_settings(conn_id: str) -> dict:
    """``MediaDownloader`` arguments (:class:`dataset_ops.apify.download.MediaDownloader`) from the
    extra of the Connection ``conn_id`` (keys :data:`APIFY_MEDIA_EXTRAS`, e.g.
    ``{"media_workers": 16, "media_read_timeout": 30}`` -> ``{"workers": 16, "read_timeout": 30.0}``);
    keys not set keep the downloader's defaults.

    :raises airflow.exceptions.AirflowNotFoundException: no Connection ``conn_id`` (names it).
    :raises ValueError: a value of the wrong type (names the Connection and the key).
    """
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    out = {}
    for key, (arg, kind) in APIFY_MEDIA_EXTRAS.items():
        if key in extra:
            try:
                out[arg] = kind(extra[key])
            except (TypeError, ValueError):
                raise ValueError(
                    f"Connection {conn_id}: extra {key}={extra[key]!r} is not a {kind.__name__}"
                ) from None
    return out


def producer(context: Any = None) -> dict:
    """Who writes a dataset, for its manifest: ``{"dag_id", "run_id"}`` of the running task's DAG
    run (``context``: the task's Airflow context; default the current one).

    :raises RuntimeError: called outside a running task without a context.
    """
    if context is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
    return {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]}


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


@dataclass(frozen=True)
class InferenceReportParams:
    """The Params of ``inference_report``.

    :param deployment_id: the deployment whose records to extract.
    :param days_back: the window's length in days, ending at the run's logical date.
    :param confidence: top-1 confidence (0..1) under which a record counts as low-confidence.
    :param min_appearances: references proposed fewer times are flagged.
    :param process_name: the process folder's name; None: the next free generated name.
    """

    deployment_id: int
    days_back: int = 30
    confidence: float = 0.78
    min_appearances: int = 20
    process_name: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InferenceReportParams:
        """From the DAG run's Params (``deployment_id``, ``days_back``, ``confidence``,
        ``min_appearances``, ``process_name``)."""
        return cls(
            deployment_id=int(params["deployment_id"]),
            days_back=int(params["days_back"]),
            confidence=float(params["confidence"]),
            min_appearances=int(params["min_appearances"]),
            process_name=params.get("process_name") or None,
        )

    def as_dict(self) -> dict:
        """The Params as recorded in the process metadata (``process_name`` "" when unset)."""
        return asdict(self) | {"process_name": self.process_name or ""}


@dataclass(frozen=True)
class InferenceDatasetParams:
    """The Params of ``inference_dataset``.

    :param process_name: the process (from ``inference_report``).
    :param references: only these reference ids (empty: all).
    :param fast_mode: limit references and images per reference to the two maxima below.
    :param exclude_registered: leave out transactions already in a registered dataset.
    :param register: ZIP, upload and registry row.
    :param dataset_name: name in the registry (None: the process name).
    """

    process_name: str
    references: tuple[int, ...] = ()
    fast_mode: bool = False
    max_references: int = 10
    max_images_per_reference: int = 20
    exclude_registered: bool = True
    register: bool = True
    dataset_name: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> InferenceDatasetParams:
        """From the DAG run's Params (the fields' names)."""
        return cls(
            process_name=str(params["process_name"]),
            references=_ints(params["references"]),
            fast_mode=bool(params["fast_mode"]),
            max_references=int(params["max_references"]),
            max_images_per_reference=int(params["max_images_per_reference"]),
            exclude_registered=bool(params["exclude_registered"]),
            register=bool(params["register"]),
            dataset_name=params.get("dataset_name") or None,
        )

    @property
    def registry_name(self) -> str:
        """The dataset's name in the registry."""
        return self.dataset_name or self.process_name


@dataclass(frozen=True)
class ApifyDownloadParams:
    """The Params of ``apify_dataset_download`` that shape the dataset.

    :param download_media: images and videos too.
    :param extract_video_frames: one JPEG every ``frame_interval_seconds`` (needs media).
    :param frame_interval_seconds: seconds of video between frames (> 0).
    :param force_download: fetch everything again even when the dataset is complete.
    """

    download_media: bool = True
    extract_video_frames: bool = True
    frame_interval_seconds: float = 1.0
    force_download: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ApifyDownloadParams:
        """From the DAG run's Params (the fields' names)."""
        return cls(
            download_media=bool(params["download_media"]),
            extract_video_frames=bool(params["extract_video_frames"]),
            frame_interval_seconds=float(params["frame_interval_seconds"]),
            force_download=bool(params["force_download"]),
        )

    @property
    def frames_wanted(self) -> bool:
        """Whether frames are extracted (they need the media)."""
        return self.download_media and self.extract_video_frames
