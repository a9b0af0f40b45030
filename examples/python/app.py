import platform
import sys

print(f"Hello from Python {platform.python_version()} on Debian, built by tsbuild")
sys.exit(0)
