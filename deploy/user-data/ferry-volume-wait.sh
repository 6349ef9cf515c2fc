#!/usr/bin/env bash
# ferry-volume-wait: the instance-side half of ferry, run on each *stateful* instance at boot.
#
# While the instance sits in Pending:Wait, ferryd restores (or reattaches) the group's newest data volume,
# attaches it, moves the Elastic IP and finally tags the instance `ferry:attached:<volume>=<volume-id>`.
# This helper waits for that volume to appear, checks and mounts its filesystem (creating one only on a
# device with no signature at all: the group's very first boot), then starts the workload's unit.
#
# It waits as long as the launch hook can hold the instance, never less: the hook's global timeout,
# min(48 h, 100 x HeartbeatTimeout), plus a 600 s margin, counted from the helper's start (which is after
# the hook's). If it fails anyway, it says so loudly, exits non-zero, never starts the unit and, with
# --mark-unhealthy, has Auto Scaling replace the instance.
#
# Usage:
#   ferry-volume-wait.sh [--volume NAME] [--mount DIR] [--fs-type xfs|ext4] [--unit UNIT]
#                        [--hook-heartbeat-timeout SECS | --timeout SECS] [--mark-unhealthy WHEN]
#                        [--volume-id vol-...] [--device /dev/sdX] [--no-mkfs] [--print-timeout]
#
#   --volume NAME     logical volume name from ferry.toml   (FERRY_VOLUME,    default: data)
#   --mount DIR       mount point                           (FERRY_MOUNT,     default: /data)
#   --fs-type TYPE    filesystem for the first boot: xfs or ext4 (FERRY_FS_TYPE, default: xfs)
#   --mount-options O mount options                          (FERRY_MOUNT_OPTIONS, default: noatime)
#   --unit UNIT       systemd unit to start once mounted; empty: none (FERRY_UNIT)
#   --hook-heartbeat-timeout SECS
#                     HeartbeatTimeout of the group's launch hook: wait min(172800, 100 x SECS) + 600 s
#                     (FERRY_HOOK_HEARTBEAT_TIMEOUT). Without it (and without --timeout), the launch
#                     hooks' GlobalTimeout is looked up with the aws CLI (autoscaling:
#                     DescribeAutoScalingInstances, DescribeLifecycleHooks); if that fails, the wait is
#                     the ceiling of any hook, 172800 + 600 s.
#   --timeout SECS    explicit override of the whole wait    (FERRY_TIMEOUT)
#   --mark-unhealthy WHEN
#                     on failure, `aws autoscaling set-instance-health --health-status Unhealthy` this
#                     instance (best effort; needs autoscaling:SetInstanceHealth on its group):
#                     timeout: only when the volume never appeared (exit 2), the one failure a new
#                              instance can cure; always: on every failure; never (FERRY_MARK_UNHEALTHY,
#                              default: never)
#   --volume-id ID    the volume id, if known; otherwise read from the instance tag
#                     ferry:attached:NAME through IMDSv2 (needs InstanceMetadataTags=enabled)
#                                                           (FERRY_VOLUME_ID)
#   --device DEV      the device name in ferry.toml (e.g. /dev/sdf): used on Xen instances, where there is
#                     no NVMe serial to match, and on Nitro when no tag can be read: the device is then
#                     trusted once it has been there for 300 s without a tag (FERRY_DEVICE)
#   --no-mkfs         never create a filesystem, even on a blank device (FERRY_NO_MKFS=1)
#   --print-timeout   print the wait in seconds that these options give, and exit (needs no root)
#
# Exit status: 0 mounted (and unit started); 1 usage or configuration; 2 timed out waiting for the volume;
#              3 the device or its filesystem is not usable (nothing was formatted); 4 interrupted (a
#              signal: systemd's start timeout, shutdown); any other: a command failed unexpectedly.
#              On any non-zero status the unit is not started.
set -euo pipefail

readonly TAG_PREFIX="ferry:attached:"
readonly IMDS="http://169.254.169.254"
# Auto Scaling's ceiling for any lifecycle hook's global timeout (48 h), and its rule: 100 heartbeats.
readonly HOOK_MAX_GLOBAL_TIMEOUT=172800
readonly HOOK_HEARTBEATS_PER_GLOBAL=100
# After ferryd's CONTINUE (the tag comes right before it), the attached device and the tag still have to
# show up here; the helper also started after the hook did. The margin covers both.
readonly TIMEOUT_MARGIN=600
# On Nitro with no readable tag, how long the configured device name must have been there before it is
# trusted (ferryd tags within seconds of the attachment).
readonly TAG_FALLBACK_SECS=300

volume="${FERRY_VOLUME:-data}"
mount_dir="${FERRY_MOUNT:-/data}"
fs_type="${FERRY_FS_TYPE:-xfs}"
mount_options="${FERRY_MOUNT_OPTIONS:-noatime}"
unit="${FERRY_UNIT:-}"
timeout="${FERRY_TIMEOUT:-}"
hook_heartbeat="${FERRY_HOOK_HEARTBEAT_TIMEOUT:-}"
mark_when="${FERRY_MARK_UNHEALTHY:-never}"
volume_id="${FERRY_VOLUME_ID:-}"
device_name="${FERRY_DEVICE:-}"
no_mkfs="${FERRY_NO_MKFS:-0}"
print_timeout=0

log() {
  local line
  line="ferry-volume-wait[$volume]: $*"
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$line" >&2
  # Under systemd, stderr already reaches the journal; from cloud-init, also send it there.
  if [[ -z "${JOURNAL_STREAM:-}" ]] && command -v logger >/dev/null 2>&1; then
    logger -t ferry-volume-wait -- "$line" || true
  fi
}

# An error: the journal, and the kernel log too, so that the serial console (aws ec2 get-console-output)
# shows it even when nobody can log in.
loud() {
  log "ERROR: $*"
  if [[ -w /dev/kmsg ]]; then
    { printf '<3>ferry-volume-wait[%s]: ERROR: %s\n' "$volume" "$*" >/dev/kmsg; } 2>/dev/null || true
  fi
}

die() {
  local code="$1"
  shift
  loud "$*"
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
    --hook-heartbeat-timeout) hook_heartbeat="${2:?--hook-heartbeat-timeout needs a value}"; shift 2 ;;
    --mark-unhealthy) mark_when="${2:?--mark-unhealthy needs a value}"; shift 2 ;;
    --volume-id) volume_id="${2:?--volume-id needs a value}"; shift 2 ;;
    --device) device_name="${2:?--device needs a value}"; shift 2 ;;
    --no-mkfs) no_mkfs=1; shift ;;
    --print-timeout) print_timeout=1; shift ;;
    -h | --help) usage ;;
    *) echo "ferry-volume-wait: unknown argument: $1" >&2; usage ;;
  esac
done

[[ "$volume" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die 1 "--volume must be 1..64 of [A-Za-z0-9_-], got '$volume'"
if [[ -n "$timeout" && ! "$timeout" =~ ^[1-9][0-9]{0,6}$ ]]; then
  die 1 "--timeout must be a number of seconds (1..9999999), got '$timeout'"
fi
if [[ -n "$hook_heartbeat" && ! "$hook_heartbeat" =~ ^[1-9][0-9]{0,5}$ ]]; then
  die 1 "--hook-heartbeat-timeout must be a number of seconds, got '$hook_heartbeat'"
fi
case "$mark_when" in never | timeout | always) ;; *) die 1 "--mark-unhealthy must be never, timeout or always, got '$mark_when'" ;; esac
[[ "$mount_dir" == /* ]] || die 1 "--mount must be an absolute path, got '$mount_dir'"
case "$fs_type" in xfs | ext4) ;; *) die 1 "--fs-type must be xfs or ext4, got '$fs_type'" ;; esac
if [[ -n "$volume_id" && ! "$volume_id" =~ ^vol-[0-9a-f]+$ ]]; then
  die 1 "--volume-id must look like vol-0123456789abcdef0, got '$volume_id'"
fi
if [[ -n "$device_name" && ! "$device_name" =~ ^/dev/(sd|xvd)[a-z]{1,2}$ ]]; then
  die 1 "--device must look like /dev/sdf or /dev/xvdf, got '$device_name'"
fi

# IMDSv2. Prints the value at latest/PATH, or nothing (not there, or IMDS not answering). The session
# token is renewed hourly: the wait can outlast its 6 h lifetime.
imds_token=""
imds_token_at=0
imds_get() {
  local path="$1" value
  if [[ -z "$imds_token" ]] || ((SECONDS - imds_token_at >= 3600)); then
    imds_token="$(curl -sf -m 2 -X PUT "$IMDS/latest/api/token" \
      -H 'X-aws-ec2-metadata-token-ttl-seconds: 21600' 2>/dev/null)" || imds_token=""
    [[ -n "$imds_token" ]] || return 0
    imds_token_at=$SECONDS
  fi
  value="$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $imds_token" "$IMDS/latest/$path" 2>/dev/null)" || return 0
  printf '%s' "$value"
}

imds_tag() {
  imds_get "meta-data/tags/instance/$1"
}

# The aws CLI with bounded network waits, in this instance's region.
aws_here() {
  local region
  region="$(imds_get meta-data/placement/region)"
  [[ -n "$region" ]] || { log "cannot read the region from IMDS"; return 1; }
  aws --region "$region" --cli-connect-timeout 10 --cli-read-timeout 30 "$@"
}

global_timeout_for() {
  local ht="$1"
  if ((ht * HOOK_HEARTBEATS_PER_GLOBAL < HOOK_MAX_GLOBAL_TIMEOUT)); then
    echo $((ht * HOOK_HEARTBEATS_PER_GLOBAL))
  else
    echo "$HOOK_MAX_GLOBAL_TIMEOUT"
  fi
}

# The longest global timeout of the launch hooks of this instance's group, looked up with the aws CLI;
# nothing if it cannot be found out. Everything but the number goes to the log.
lookup_hook_global_timeout() {
  local id group hooks best=0 global heartbeat
  if ! command -v aws >/dev/null 2>&1; then
    log "no aws CLI: cannot look up the launch hook's timeout"
    return 0
  fi
  id="$(imds_get meta-data/instance-id)"
  [[ "$id" =~ ^i-[0-9a-f]+$ ]] || { log "cannot read the instance id from IMDS"; return 0; }
  group="$(imds_tag aws:autoscaling:groupName)"
  if [[ -z "$group" ]]; then
    group="$(aws_here autoscaling describe-auto-scaling-instances --instance-ids "$id" \
      --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text)" || group=""
  fi
  if [[ -z "$group" || "$group" == None ]]; then
    log "cannot tell which Auto Scaling group $id is in"
    return 0
  fi
  hooks="$(aws_here autoscaling describe-lifecycle-hooks --auto-scaling-group-name "$group" \
    --query "LifecycleHooks[?LifecycleTransition=='autoscaling:EC2_INSTANCE_LAUNCHING'].[GlobalTimeout,HeartbeatTimeout]" \
    --output text)" || { log "cannot describe the lifecycle hooks of $group"; return 0; }
  while read -r global heartbeat; do
    if [[ ! "$global" =~ ^[0-9]+$ ]]; then
      [[ "$heartbeat" =~ ^[0-9]+$ ]] || continue
      global="$(global_timeout_for "$heartbeat")"
    fi
    ((global <= best)) || best=$global
  done <<<"$hooks"
  if ((best == 0)); then
    log "group $group has no launch lifecycle hook"
    return 0
  fi
  log "the launch hook of group $group holds an instance for at most ${best}s"
  echo "$best"
}

# The wait: an explicit --timeout; else the hook's global timeout (from --hook-heartbeat-timeout, or
# looked up) plus the margin; else the ceiling of any hook plus the margin. Never shorter than the hook.
if [[ -n "$timeout" ]]; then
  timeout_source="--timeout"
  if [[ -n "$hook_heartbeat" ]] && ((timeout < $(global_timeout_for "$hook_heartbeat"))); then
    log "WARNING: --timeout ${timeout}s is shorter than the launch hook's global timeout ($(global_timeout_for "$hook_heartbeat")s): the helper may give up while ferryd is still working"
  fi
else
  if [[ -n "$hook_heartbeat" ]]; then
    hook_global="$(global_timeout_for "$hook_heartbeat")"
    timeout_source="launch hook HeartbeatTimeout ${hook_heartbeat}s: global timeout ${hook_global}s + ${TIMEOUT_MARGIN}s"
  else
    hook_global="$(lookup_hook_global_timeout)"
    if [[ -n "$hook_global" ]]; then
      timeout_source="launch hook global timeout ${hook_global}s (looked up) + ${TIMEOUT_MARGIN}s"
    else
      hook_global=$HOOK_MAX_GLOBAL_TIMEOUT
      timeout_source="no hook timeout known: the 48 h ceiling of any hook + ${TIMEOUT_MARGIN}s"
    fi
  fi
  timeout=$((hook_global + TIMEOUT_MARGIN))
fi
if [[ "$print_timeout" == 1 ]]; then
  echo "$timeout"
  exit 0
fi
[[ $EUID -eq 0 ]] || die 1 "must run as root (it mounts and may create a filesystem)"

# From here on, every failure is loud, leaves the unit unstarted and, as --mark-unhealthy says, has Auto
# Scaling replace the instance.
mark_unhealthy() {
  local id attempt
  if ! command -v aws >/dev/null 2>&1; then
    loud "cannot mark this instance Unhealthy: no aws CLI"
    return 0
  fi
  id="$(imds_get meta-data/instance-id)"
  if [[ ! "$id" =~ ^i-[0-9a-f]+$ ]]; then
    loud "cannot mark this instance Unhealthy: no instance id from IMDS"
    return 0
  fi
  # A few tries: right after the hook the instance may still be on its way to InService.
  for attempt in 1 2 3 4 5 6; do
    if aws_here autoscaling set-instance-health --instance-id "$id" --health-status Unhealthy \
      --no-should-respect-grace-period; then
      loud "marked $id Unhealthy: Auto Scaling replaces it (ferry snapshots and moves the data again)"
      return 0
    fi
    log "set-instance-health failed (attempt $attempt of 6)"
    sleep 10
  done
  loud "could not mark $id Unhealthy (see the aws errors above): it stays in its group without the workload"
}

on_exit() {
  local rc=$?
  trap - EXIT
  if [[ $rc -ne 0 ]]; then
    loud "FAILED (exit $rc): ${unit:-the workload} was not started; $mount_dir $(mountpoint -q "$mount_dir" 2>/dev/null && echo 'is mounted' || echo 'is not mounted'). See journalctl -u ferry-volume-wait; once fixed: systemctl restart ferry-volume-wait"
    if [[ "$mark_when" == always || ("$mark_when" == timeout && $rc -eq 2) ]]; then
      mark_unhealthy
    elif [[ "$mark_when" == timeout ]]; then
      loud "not marking this instance Unhealthy (--mark-unhealthy timeout): a replacement would get the same data and configuration and fail the same way; fix it on this instance"
    fi
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 4' TERM INT HUP

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
device_seen_at=""
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

log "waiting up to ${timeout}s ($timeout_source) for the ferry volume (mount $mount_dir, fs $fs_type, unit ${unit:-none}, mark unhealthy: $mark_when)"
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
    elif [[ -n "$device_name" && -e "$device_name" ]]; then
      # The device is there but no tag is readable (instance tags not in IMDS?): trust the
      # amazon-ec2-utils symlink once ferryd has had ample time to tag.
      [[ -n "$device_seen_at" ]] || device_seen_at=$SECONDS
      if ((SECONDS - device_seen_at >= TAG_FALLBACK_SECS)); then
        device="$(readlink -f "$device_name")"
        log "no $tag_key tag readable ${TAG_FALLBACK_SECS}s after $device_name appeared; falling back to $device_name -> $device"
      else
        note "$device_name is attached but the instance tag $tag_key is not readable yet"
      fi
    else
      note "waiting for the instance tag $tag_key (ferryd writes it once the volume is attached)"
    fi
  else
    if [[ -n "$device_name" ]]; then
      device="$(xen_device_for "$device_name")"
      [[ -n "$device" ]] || note "waiting for $device_name (Xen: no NVMe serial to match)"
    else
      die 1 "not a Nitro instance and no --device given: nothing could ever identify the volume"
    fi
  fi
  if [[ -n "$device" && -b "$device" ]]; then
    break
  fi
  device=""
  if [[ $SECONDS -ge $deadline ]]; then
    die 2 "timed out after ${timeout}s: the ferry volume '$volume' (${volume_id:-id unknown}) never appeared; the launch hook is over, so it will not come"
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
