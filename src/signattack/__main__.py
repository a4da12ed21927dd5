"""``python -m signattack``."""

from signattack.cli import main

raise SystemExit(main())
