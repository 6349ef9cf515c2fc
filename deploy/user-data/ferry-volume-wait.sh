#!/usr/bin/env bash
# ferry-volume-wait: the instance-side half of ferry, run on each *stateful* instance at boot.
#
# While the instance sits in Pending:Wait, ferryd restores (or reattaches) the group's newest data volume,
# attaches it, moves the Elastic IP and finally tags the instance `ferry:attached:<volume>=<volume-id>`.
# This helper waits, bounded, for that volume to appear, checks and mounts its filesystem (creating one only
# on a device with no signature at all: the group's very first boot), then starts the workload's unit.
#
# Usage:
#   ferry-volume-wait.sh [--volume NAME] [--mount DIR] [--fs-type xfs|ext4] [--unit UNIT]
#                        [--timeout SECS] [--volume-id vol-...] [--device /dev/sdX] [--no-mkfs]
#
#   --volume NAME     logical volume name from ferry.toml   (FERRY_VOLUME,    default: data)
#   --mount DIR       mount point                           (FERRY_MOUNT,     default: /data)
#   --fs-type TYPE    filesystem for the first boot: xfs or ext4 (FERRY_FS_TYPE, default: xfs)
#   --mount-options O mount options                          (FERRY_MOUNT_OPTIONS, default: noatime)
#   --unit UNIT       systemd unit to start once mounted; empty: none (FERRY_UNIT)
#   --timeout SECS    give up after this long               (FERRY_TIMEOUT,   default: 1800)
#   --volume-id ID    the volume id, if known; otherwise read from the instance tag
#                     ferry:attached:NAME through IMDSv2 (needs InstanceMetadataTags=enabled)
#                                                           (FERRY_VOLUME_ID)
#   --device DEV      the device name in ferry.toml (e.g. /dev/sdf): used on Xen instances, where there is
#                     no NVMe serial to match, and as a last resort when no tag can be read (FERRY_DEVICE)
#   --no-mkfs         never create a filesystem, even on a blank device (FERRY_NO_MKFS=1)
#
# Exit status: 0 mounted (and unit started); 1 usage; 2 timed out waiting for the volume;
#              3 the device or its filesystem is not usable (nothing was formatted).
set -euo pipefail

readonly TAG_PREFIX="ferry:attached:"
readonly IMDS="http://169.254.169.254"

volume="${FERRY_VOLUME:-data}"
mount_dir="${FERRY_MOUNT:-/data}"
fs_type="${FERRY_FS_TYPE:-xfs}"
mount_options="${FERRY_MOUNT_OPTIONS:-noatime}"
unit="${FERRY_UNIT:-}"
timeout="${FERRY_TIMEOUT:-1800}"
volume_id="${FERRY_VOLUME_ID:-}"
device_name="${FERRY_DEVICE:-}"
no_mkfs="${FERRY_NO_MKFS:-0}"

log() {
  local line
  line="ferry-volume-wait[$volume]: $*"
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line" >&2
  # Under systemd, stderr already reaches the journal; from cloud-init, also send it there.
  if [[ -z "${JOURNAL_STREAM:-}" ]] && command -v logger >/dev/null 2>&1; then
    logger -t ferry-volume-wait -- "$line" || true
  fi
}

die() {
  local code="$1"
  shift
  log "ERROR: $*"
  exit "$code"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --volume) volume="${2:?--volume needs a value}"; shift 2 ;;
    --mount) mount_dir="${2:?--mount needs a value}"; shift 2 ;;
    --fs-type) fs_type="${2:?--fs-type needs a value}"; shift 2 ;;
    --mount-options) mount_options="${2:?--mount-options needs a value}"; shift 2 ;;
    --unit) unit="${2-}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs a value}"; shift 2 ;;
    --volume-id) volume_id="${2:?--volume-id needs a value}"; shift 2 ;;
    --device) device_name="${2:?--device needs a value}"; shift 2 ;;
    --no-mkfs) no_mkfs=1; shift ;;
    -h | --help) usage ;;
    *) echo "ferry-volume-wait: unknown argument: $1" >&2; usage ;;
  esac
done

[[ "$volume" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die 1 "--volume must be 1..64 of [A-Za-z0-9_-], got '$volume'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die 1 "--timeout must be a number of seconds, got '$timeout'"
[[ "$mount_dir" == /* ]] || die 1 "--mount must be an absolute path, got '$mount_dir'"
case "$fs_type" in xfs | ext4) ;; *) die 1 "--fs-type must be xfs or ext4, got '$fs_type'" ;; esac
if [[ -n "$volume_id" && ! "$volume_id" =~ ^vol-[0-9a-f]+$ ]]; then
  die 1 "--volume-id must look like vol-0123456789abcdef0, got '$volume_id'"
fi
if [[ -n "$device_name" && ! "$device_name" =~ ^/dev/(sd|xvd)[a-z]{1,2}$ ]]; then
  die 1 "--device must look like /dev/sdf or /dev/xvdf, got '$device_name'"
fi
[[ $EUID -eq 0 ]] || die 1 "must run as root (it mounts and may create a filesystem)"

# IMDSv2: a session token, then the instance tag. Prints the value, or nothing if the tag is not there yet.
imds_token=""
imds_tag() {
  local key="$1" value
  if [[ -z "$imds_token" ]]; then
    imds_token="$(curl -sf -m 2 -X PUT "$IMDS/latest/api/token" \
      -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' 2>/dev/null)" || { imds_token=""; return 0; }
  fi
  value="$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $imds_token" \
    "$IMDS/latest/meta-data/tags/instance/$key" 2>/dev/null)" || return 0
  printf '%s' "$value"
}

is_nitro() {
  [[ -d /sys/class/nvme ]] && compgen -G '/sys/class/nvme/nvme*' >/dev/null
}

# The block device whose NVMe serial is the volume id without its dash, or nothing.
nvme_device_for() {
  local serial="${1//-/}" link ctrl
  link="/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${serial}"
  if [[ -e "$link" ]]; then
    readlink -f "$link"
    return 0
  fi
  for ctrl in /sys/class/nvme/nvme*; do
    [[ -r "$ctrl/serial" ]] || continue
    if [[ "$(tr -d '[:space:]' <"$ctrl/serial")" == "$serial" ]]; then
      local ns
      for ns in "$ctrl"/nvme*n1; do
        [[ -e "$ns" ]] && { printf '/dev/%s\n' "$(basename "$ns")"; return 0; }
      done
    fi
  done
  return 0
}

# The Xen name of a configured device: /dev/sdf is attached as /dev/xvdf (or keeps its name).
xen_device_for() {
  local name="$1" candidate
  for candidate in "$name" "/dev/xvd${name#/dev/sd}" "/dev/sd${name#/dev/xvd}"; do
    [[ -b "$candidate" ]] && { readlink -f "$candidate"; return 0; }
  done
  return 0
}

deadline=$((SECONDS + timeout))
tag_key="${TAG_PREFIX}${volume}"
device=""
last_note=""
last_note_at=0
note() {
  # Logs a waiting line when the reason changes, and at most once a minute otherwise.
  if [[ "$1" != "$last_note" || $((SECONDS - last_note_at)) -ge 60 ]]; then
    log "$1 ($((deadline - SECONDS))s left)"
    last_note="$1"
    last_note_at=$SECONDS
  fi
}

log "waiting up to ${timeout}s for the ferry volume (mount $mount_dir, fs $fs_type, unit ${unit:-none})"
while :; do
  if [[ -z "$volume_id" ]]; then
    id="$(imds_tag "$tag_key")"
    if [[ "$id" =~ ^vol-[0-9a-f]+$ ]]; then
      volume_id="$id"
      log "instance tag $tag_key = $volume_id"
    fi
  fi
  if is_nitro; then
    if [[ -n "$volume_id" ]]; then
      device="$(nvme_device_for "$volume_id")"
      [[ -n "$device" ]] || note "volume $volume_id is not attached yet (no NVMe device with serial ${volume_id//-/})"
    elif [[ -n "$device_name" && -e "$device_name" ]] && [[ "$SECONDS" -ge $((deadline - timeout / 2)) ]]; then
      # No tag after half the budget (instance tags not in IMDS?): trust the amazon-ec2-utils symlink.
      device="$(readlink -f "$device_name")"
      log "no $tag_key tag readable; falling back to the device name $device_name -> $device"
    else
      note "waiting for the instance tag $tag_key (ferryd writes it once the volume is attached)"
    fi
  else
    if [[ -n "$device_name" ]]; then
      device="$(xen_device_for "$device_name")"
      [[ -n "$device" ]] || note "waiting for $device_name (Xen: no NVMe serial to match)"
    else
      note "not a Nitro instance and no --device given: waiting for nothing that can appear"
    fi
  fi
  if [[ -n "$device" && -b "$device" ]]; then
    break
  fi
  device=""
  if [[ $SECONDS -ge $deadline ]]; then
    die 2 "timed out after ${timeout}s: the ferry volume '$volume' (${volume_id:-id unknown}) never appeared; not starting ${unit:-the workload}"
  fi
  sleep 2
done
log "found the volume ${volume_id:-($device_name)} at $device"

# Never touch a device that is already in use elsewhere (root, another mount).
root_source="$(findmnt -n -o SOURCE / || true)"
if [[ -n "$root_source" && "$(readlink -f "$root_source")" == "$device"* ]]; then
  die 3 "$device is (part of) the root device; refusing"
fi
current="$(findmnt -n -o TARGET --source "$device" 2>/dev/null | head -n1 || true)"
if [[ -n "$current" && "$current" != "$mount_dir" ]]; then
  die 3 "$device is already mounted at $current; refusing to mount it at $mount_dir"
fi

udevadm settle --timeout=10 >/dev/null 2>&1 || true
found_fs="$(blkid -p -o value -s TYPE "$device" 2>/dev/null || true)"
found_pt="$(blkid -p -o value -s PTTYPE "$device" 2>/dev/null || true)"
if [[ -z "$found_fs" ]]; then
  if [[ -n "$found_pt" ]]; then
    die 3 "$device holds a $found_pt partition table but no filesystem; refusing to format it"
  fi
  signatures="$(wipefs --no-act --noheadings "$device" 2>/dev/null || true)"
  if [[ -n "$signatures" ]]; then
    die 3 "$device has signatures blkid cannot name ($signatures); refusing to format it"
  fi
  if [[ "$no_mkfs" == 1 ]]; then
    die 3 "$device has no filesystem and --no-mkfs is set"
  fi
  log "$device has no filesystem at all: first boot of this data, creating $fs_type"
  case "$fs_type" in
    xfs) mkfs.xfs -q -L "ferry-$volume" "$device" ;;
    ext4) mkfs.ext4 -q -L "ferry-$volume" "$device" ;;
  esac
  found_fs="$fs_type"
else
  log "$device holds an existing $found_fs filesystem; it is never reformatted"
fi

if [[ "$current" == "$mount_dir" ]]; then
  log "$device is already mounted at $mount_dir"
else
  case "$found_fs" in
    ext2 | ext3 | ext4)
      set +e
      fsck -p -t "$found_fs" "$device"
      rc=$?
      set -e
      if [[ $rc -ge 4 ]]; then
        die 3 "fsck of $device exited $rc: the filesystem needs manual repair; not mounting"
      fi
      log "fsck of $device exited $rc (0 clean, 1 errors corrected)"
      ;;
    xfs)
      log "xfs: the log is replayed at mount time; no separate fsck"
      ;;
    *)
      log "no fsck for $found_fs; mounting as is"
      ;;
  esac
  mkdir -p "$mount_dir"
  mount -t "$found_fs" -o "$mount_options" "$device" "$mount_dir" ||
    die 3 "mount -t $found_fs $device $mount_dir failed"
  log "mounted $device ($found_fs) at $mount_dir"
fi

if [[ -n "$unit" ]]; then
  # --no-block: this helper usually runs as a unit the workload is ordered after; waiting would deadlock.
  systemctl start --no-block "$unit"
  log "started $unit"
else
  log "no --unit given; nothing to start"
fi
