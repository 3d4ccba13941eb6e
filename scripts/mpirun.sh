#!/usr/bin/env bash
# mpirun for a workstation, with the stop signals made safe: Ctrl-C (SIGINT) or
# SIGTERM to this script reach the ranks as SIGUSR1, so every rank stops after
# the same step, checkpoints, and the exit code is laptop-diff's 3 ("stopped,
# continue with --resume"). Plain `mpirun` cannot do this: Open MPI's mpirun
# aborts the job on its own SIGINT/SIGTERM (exit 1, the ranks SIGKILLed 1 s
# after its SIGTERM), and Ctrl-C reaches every process of the terminal's group.
#   scripts/mpirun.sh [mpirun options] build/laptop-diff COMMAND JOB.cfg [...]
# mpirun runs in its own session (setsid), so the terminal's Ctrl-C reaches only
# this script, which forwards it (slurm/lib.sh's ld_step, as in a batch job).
set -u
. "$(dirname "$0")/../slurm/lib.sh" || { echo "mpirun.sh: slurm/lib.sh not found"; exit 2; }
[ $# -ge 1 ] || { echo "usage: scripts/mpirun.sh [mpirun options] laptop-diff COMMAND ..."; exit 2; }
ld_step setsid -w mpirun "$@"
