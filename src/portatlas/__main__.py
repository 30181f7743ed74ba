from portatlas.cli import main

raise SystemExit(main())
