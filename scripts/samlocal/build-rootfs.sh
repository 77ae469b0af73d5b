#!/bin/sh
# The root filesystem of lodbrok-local/lambda-python:3.13, a stand-in for public.ecr.aws/lambda/python:3.13
# where no image registry is reachable (docs/local-development.md, "make sam-local"). engine.py caches its tarball under a hash of
# this file, so any change here rebuilds the image.
#
#   build-rootfs.sh ROOTFS MIRROR PIP...    (PIP: the pip command that cross-installs the cp313 wheels)
set -eu
rootfs=$1
mirror=$2
shift 2

# Debian trixie's python3 is 3.13, the Lambda runtime's version; the Lambda image has pip too (the retrain
# image's Dockerfile runs it).
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates trixie "$rootfs" "$mirror"

# What the Lambda image has in /var/runtime: the runtime interface client and the runtime's boto3.
"$@" install --quiet --target "$rootfs/var/runtime" --only-binary=:all: --implementation cp --python-version 3.13 \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	--no-compile --no-warn-conflicts --disable-pip-version-check \
	awslambdaric==4.2.2 boto3==1.43.108
rm -rf "$rootfs/var/runtime/bin"

# SAM's runtime interface emulator runs /var/runtime/bootstrap with _HANDLER set, as Lambda does.
cat >"$rootfs/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
export PYTHONPATH=/var/task:/opt/python:/var/runtime
cd /var/task
exec python3 -m awslambdaric "$_HANDLER"
EOF
chmod 755 "$rootfs/var/runtime/bootstrap"

# The Lambda image's entry point (engine.py sets it as ENTRYPOINT): SAM runs an image function as
# `aws-lambda-rie /lambda-entrypoint.sh <CMD>`, and the handler reaches the bootstrap as _HANDLER.
cat >"$rootfs/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
if [ $# -ne 1 ]; then
	echo "entrypoint requires the handler name to be the first argument" >&2
	exit 142
fi
export _HANDLER="$1"
exec /var/runtime/bootstrap
EOF
chmod 755 "$rootfs/lambda-entrypoint.sh"
mkdir -p "$rootfs/var/task" "$rootfs/opt"

# With the vfs storage driver every image layer and container is a full copy: drop what a function never reads.
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* \
	"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
