from gpunn.cli.main import main

raise SystemExit(main())
