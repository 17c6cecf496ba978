"""``python -m scheduler.child SPEC.json``: the launch child (see `scheduler.child.launch`)."""

import sys

from scheduler.child.launch import main

sys.exit(main())
