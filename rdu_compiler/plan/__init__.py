"""IR-free algorithms over plain data: sections (`sections`) and placement and routing
(`placement`), testable without building IR."""
