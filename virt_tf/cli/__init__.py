"""What every command shares: flag parsing with user errors as one line (`common`), the path
checks run before any work (`paths`) and the installed console commands (`console`)."""
