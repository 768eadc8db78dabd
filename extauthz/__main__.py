from __future__ import annotations

from extauthz.cli import main

raise SystemExit(main())
