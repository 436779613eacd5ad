"""Compatibility alias: ``python -m modeling.predict ...`` is ``python -m inference.predict ...``.

Prediction moved to the top-level ``inference`` package; this keeps old commands and scripts working.
"""

import sys

from inference.predict import main

if __name__ == "__main__":
    sys.exit(main())
