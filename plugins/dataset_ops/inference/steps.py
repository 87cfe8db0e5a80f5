"""The steps of the ``inference_review`` and ``inference_dataset`` DAGs: the Variables, storage
and registry around :mod:`.review`, :mod:`.dataset` and :mod:`.register`, with XCom-sized results.

Variables: ``inference_images_root`` (the image store, e.g. ``s3://retail-images/``; required),
``inference_registry_root`` (where registered datasets and ``registry.csv`` live; default
``registry/`` below ``dataset_ops_storage_root``).
"""

from __future__ import annotations

import posixpath

from dataset_ops.inference.process import process_prefix, read_metadata, record_step

IMAGES_ROOT_VARIABLE = "inference_images_root"
REGISTRY_ROOT_VARIABLE = "inference_registry_root"


def images_root() -> str:
    """The Variable ``inference_images_root``. :raises KeyError: not set (names it)."""
    from airflow.sdk import Variable

    root = Variable.get(IMAGES_ROOT_VARIABLE, default=None)
    if not root:
        raise KeyError(f"set the Variable {IMAGES_ROOT_VARIABLE} (the image store, e.g. s3://bucket/images/)")
    return root


def registry_root() -> str:
    """The Variable ``inference_registry_root``, else ``registry/`` below the storage root."""
    from airflow.sdk import Variable

    from dataset_ops.storage import STORAGE_ROOT_VARIABLE, default_storage_root

    root = Variable.get(REGISTRY_ROOT_VARIABLE, default=None)
    if root:
        return root
    base = Variable.get(STORAGE_ROOT_VARIABLE, default=default_storage_root())
    return base.rstrip("/") + "/registry" if base.startswith("s3://") else posixpath.join(base, "registry")


def _storage():
    from dataset_ops.storage import storage_from_variable

    return storage_from_variable()


def create_dataset_step(params: dict) -> dict:
    """Class folders under ``dataset/`` of the process (see :func:`.dataset.create_dataset`).

    :raises FileNotFoundError: no such process.
    """
    from dataset_ops.inference.dataset import create_dataset
    from dataset_ops.inference.register import registered_transactions

    storage = _storage()
    name = params["process_name"]
    metadata = read_metadata(storage, name)
    if metadata is None:
        raise FileNotFoundError(f"no process {name} (run inference_report first)")
    exclude = registered_transactions(registry_root()) if params["exclude_registered"] else frozenset()
    limits = {}
    if params["fast_mode"]:
        limits = {
            "max_references": params["max_references"],
            "max_images_per_reference": params["max_images_per_reference"],
        }
    summary = create_dataset(
        storage,
        process_prefix(name),
        images_root(),
        fast=bool(params["fast_mode"]),
        exclude_transactions=exclude,
        references=list(params["references"] or []) or None,
        **limits,
    )
    small = {
        "process_name": name,
        "deployment_id": metadata.get("deployment_id"),
        "prefix": summary["prefix"],
        "images": summary["images"],
        "bytes": summary["bytes"],
        "classes": len(summary["classes"]),
        "skipped": summary["skipped"],
        "missing_count": summary["missing_count"],
        "excluded_registered": len(exclude),
    }
    record_step(storage, name, "create_dataset", small)
    return small


def summary_step(created: dict) -> dict:
    """``reports/summary_dataset.csv`` (see :func:`.dataset.summary_dataset`)."""
    from dataset_ops.inference.dataset import summary_dataset

    storage = _storage()
    result = summary_dataset(
        storage, created["prefix"], f"{process_prefix(created['process_name'])}/data/records.parquet"
    )
    record_step(storage, created["process_name"], "summary_dataset", result)
    return result


def folder_structure_step(created: dict) -> dict:
    """``reports/folder_structure.csv`` (see :func:`.dataset.folder_structure`)."""
    from dataset_ops.inference.dataset import folder_structure

    storage = _storage()
    result = folder_structure(storage, created["prefix"])
    record_step(storage, created["process_name"], "folder_structure", result)
    return result


def register_step(created: dict, dataset_name: str, dag_run_id: str = "") -> dict:
    """ZIP, upload and one registry row (see :func:`.register.register_dataset`); the row names
    the process, its deployment (when ``created`` has one) and the DAG run that registered it."""
    from dataset_ops.inference.register import register_dataset

    storage = _storage()
    metadata = {
        "process_name": created["process_name"],
        "deployment_id": created.get("deployment_id"),
        "dag_run_id": dag_run_id,
    }
    result = register_dataset(
        storage, created["prefix"], registry_root(), name=dataset_name, metadata=metadata
    )
    record_step(storage, created["process_name"], "register_dataset", result, status="registered")
    return result


def merge_step(process_names: list[str], target: str) -> dict:
    """The datasets of ``process_names`` merged into ``processes/{target}/dataset/`` (see
    :func:`.dataset.merge_datasets`), with the target's ``process_metadata.json`` naming them.

    :raises ValueError: fewer than two processes, the target among them, or an incomplete source.
    """
    from dataset_ops.inference.dataset import merge_datasets
    from dataset_ops.inference.process import check_process_name, write_metadata

    names = [check_process_name(n) for n in process_names]
    if len(set(names)) < 2 or check_process_name(target) in names:
        raise ValueError(f"merge needs two or more other processes than the target {target}: {names}")
    storage = _storage()
    result = merge_datasets(
        storage, [f"{process_prefix(n)}/dataset" for n in names], f"{process_prefix(target)}/dataset"
    )
    metadata = read_metadata(storage, target) or {"process_name": target, "steps": {}}
    metadata.update(merged_from=names, status="merged")
    write_metadata(storage, target, metadata)
    small = {
        k: result[k]
        for k in ("prefix", "files", "bytes", "duplicates", "conflict_count", "missing_in_source")
    }
    small["classes"] = len(result["classes"])
    small["process_name"] = target
    deployments = {(read_metadata(storage, n) or {}).get("deployment_id") for n in names}
    if len(deployments) == 1:  # sources of one deployment: the merged dataset is of it too
        small["deployment_id"] = deployments.pop()
    record_step(storage, target, "merge_datasets", small)
    return small
