#!/bin/sh
echo "Hello from tsbuild!"
echo "This image was built without a daemon."
