#!/bin/sh
echo "$GREETING"
echo "This image was built without a daemon, by $(cat /app/builder 2>/dev/null || echo tsbuild)."
