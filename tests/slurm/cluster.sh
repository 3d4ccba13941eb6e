# Sourced by tests/slurm/test_slurm.sh: a one-node Slurm of this host, private to
# the test. Everything lives in $SL (a temp dir): munged's socket, key and pid,
# slurm.conf, the spool and state dirs, the logs. Nothing is installed or
# written outside it, and only loopback traffic is used (the node name is this
# host's short name, which resolves to 127.0.0.1 here).
#   cluster_start  - munged, slurmctld, slurmd; waits until the node is idle
#   cluster_stop   - stops all three (call from an EXIT trap: also on failure)
# Exports SLURM_CONF, so sbatch/squeue/scontrol/scancel talk to this cluster.

# wait_for TIMEOUT_S WHAT CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
  local limit=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$limit" ]; then echo "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.5
  done
}

cluster_start() {
  SL=$1
  local host; host=$(hostname -s)
  mkdir -p "$SL/munge" "$SL/msock" "$SL/spool" "$SL/state" "$SL/log"
  # munged refuses to run as root and checks its files' permissions: the key in a
  # dir private to the munge user, the socket in one everybody may enter.
  chmod 755 "$SL"
  local key=/etc/munge/munge.key
  if [ -r "$key" ]; then cp "$key" "$SL/munge/munge.key"
  else mungekey --create --keyfile="$SL/munge/munge.key" || return 1; fi
  chown -R munge:munge "$SL/munge"; chmod 700 "$SL/munge"; chmod 600 "$SL/munge/munge.key"
  chown munge:munge "$SL/msock"; chmod 755 "$SL/msock"
  # a port pair of our own, so a second cluster (or a site's slurmd) does not clash
  local port=$((20000 + ($$ % 20000) * 2))
  runuser -u munge -- munged --socket="$SL/msock/munge.socket" --key-file="$SL/munge/munge.key" \
    --pid-file="$SL/munge/munged.pid" --seed-file="$SL/munge/munged.seed" --log-file="$SL/munge/munged.log" \
    || { echo "munged did not start: $(tail -3 "$SL/munge/munged.log" 2>/dev/null)"; return 1; }
  cat >"$SL/slurm.conf" <<CONF
ClusterName=ldtest
# job ids of our own: srun's PMIx and Open MPI name their /tmp files by job id, so
# two clusters on one host that both count from 1 would cross their steps
FirstJobId=$(( ($$ % 20000) * 1000 + 1 ))
# the address given, so neither daemon depends on how this host name resolves
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire before it may start again (default 120 s)
AuthInfo=socket=$SL/msock/munge.socket,cred_expire=15
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/log/slurmctld.log
SlurmdLogFile=$SL/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in a container: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
JobRequeue=1
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  export SLURM_CONF=$SL/slurm.conf
  slurmctld -f "$SLURM_CONF" -i || { echo "slurmctld did not start: $(tail -5 "$SL/log/slurmctld.log")"; return 1; }
  slurmd -f "$SLURM_CONF" || { echo "slurmd did not start: $(tail -5 "$SL/log/slurmd.log")"; return 1; }
  wait_for 60 "the node to be idle" sh -c "sinfo -h -N -o %t | grep -qx idle" \
    || { sinfo -N 2>&1; tail -5 "$SL/log/slurmctld.log" "$SL/log/slurmd.log"; return 1; }
}

# stop_pidfile FILE: SIGTERM the daemon whose pid is in FILE, SIGKILL after 10 s.
stop_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null
}

cluster_stop() {
  [ -n "${SL:-}" ] || return 0
  # jobs first, so no step outlives its slurmd
  scancel --full -u "$(id -un)" >/dev/null 2>&1 && sleep 1
  stop_pidfile "$SL/slurmd.pid"
  stop_pidfile "$SL/slurmctld.pid"
  stop_pidfile "$SL/munge/munged.pid"
}
