#!/usr/bin/env bash
# ferryd-health-report: run every minute by ferryd-health-report.timer on a ferry control instance. When
# ferryd's /healthz has failed FAILURES checks in a row (a ferryd that crashes again at every restart, a
# hang the watchdog's restarts do not cure, a unit that cannot start), it marks this instance Unhealthy in
# its Auto Scaling group, which replaces it. The other replica keeps working the queue meanwhile.
#
#   ferryd-health-report [--url URL] [--failures N] [--grace SECS] [--state FILE] [--dry-run]
#
# Not before the instance has been up GRACE seconds (a booting ferryd is not a failing one). Needs
# autoscaling:SetInstanceHealth on its own group, IMDSv2, curl and the aws CLI.
set -euo pipefail

url="http://127.0.0.1:9464/healthz"
failures=3
grace=600
state="/run/ferry/health-failures"
dry_run=0

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --failures) failures="$2"; shift 2 ;;
    --grace) grace="$2"; shift 2 ;;
    --state) state="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "ferryd-health-report: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$failures" =~ ^[0-9]+$ && "$grace" =~ ^[0-9]+$ ]] || [[ "$failures" -lt 1 ]]; then
  echo "ferryd-health-report: --failures must be an integer >= 1 and --grace >= 0, got $failures and $grace" >&2
  exit 2
fi

mkdir -p "$(dirname "$state")"
if curl --silent --fail --max-time 5 --output /dev/null "$url"; then
  if [[ -s "$state" && "$(cat "$state")" != 0 ]]; then
    echo "ferryd-health-report: $url healthy again"
  fi
  echo 0 >"$state"
  exit 0
fi

count=$(( $(cat "$state" 2>/dev/null || echo 0) + 1 ))
echo "$count" >"$state"
echo "ferryd-health-report: $url failed ($count of $failures in a row)" >&2
if [[ "$count" -lt "$failures" ]]; then
  exit 0
fi
uptime_secs="$(cut -d. -f1 /proc/uptime)"
if [[ "$uptime_secs" -lt "$grace" ]]; then
  echo "ferryd-health-report: up ${uptime_secs}s, under the ${grace}s grace period: not reporting yet" >&2
  exit 0
fi

if [[ "$dry_run" == 1 ]]; then
  echo "ferryd-health-report: --dry-run: would mark this instance Unhealthy (aws autoscaling set-instance-health)" >&2
  exit 0
fi
token="$(curl --silent --fail --max-time 5 -X PUT "http://169.254.169.254/latest/api/token" \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300")"
imds() { curl --silent --fail --max-time 5 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/$1"; }
instance="$(imds meta-data/instance-id)"
region="$(imds meta-data/placement/region)"
echo "ferryd-health-report: marking $instance Unhealthy: ferryd failed $count health checks in a row" >&2
aws autoscaling set-instance-health --region "$region" --instance-id "$instance" \
  --health-status Unhealthy --no-should-respect-grace-period
