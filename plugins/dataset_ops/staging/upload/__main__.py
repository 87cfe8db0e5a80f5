"""``python -m dataset_ops.staging.upload FILE ...``: see :mod:`dataset_ops.staging.upload`."""

import sys

from dataset_ops.staging.upload.cli import main

sys.exit(main())
