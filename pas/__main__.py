from pas.surfaces.cli import main

raise SystemExit(main())
