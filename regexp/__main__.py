from regexp.cli import main

raise SystemExit(main())
