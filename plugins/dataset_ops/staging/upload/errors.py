"""Exceptions of the uploader (:mod:`dataset_ops.staging.upload`), with their exit codes."""

from __future__ import annotations


class UploadError(RuntimeError):
    """The upload did not complete (exit code 1). The status record says ``uploading`` when it
    can resume: rerunning the same command resumes it."""


class NameTaken(UploadError):
    """``uploads/<NAME>`` holds a different file that has not been validated yet; nothing was
    replaced. Exit code 3."""


class UploadInterrupted(UploadError):
    """Stopped by Ctrl-C (or another BaseException) while parts were going out; resumable.
    Exit code 130."""


class UploadCancelled(Exception):
    """Raised inside part reads once the upload is stopping (not an OSError: never retried)."""
