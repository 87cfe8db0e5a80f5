"""Staged uploads: ``uploads/`` -> validate as a stream -> ``fresh/`` or ``failed/`` (quarantine)."""
