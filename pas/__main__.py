from pas.cli import main

raise SystemExit(main())
