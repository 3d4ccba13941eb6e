// stop.h — the stop request a scheduler sends (SIGUSR1 before a time limit or
// preemption, SIGTERM on scancel, SIGINT on Ctrl-C). The handler only records
// the signal; the stages poll it at points where every rank can stop together:
// the trainer folds it into a per-step reduction (checkpoint, then exit 3),
// comm_run_jobs between work items (score and plan stop, keeping nothing).
#ifndef LD_STOP_H
#define LD_STOP_H

// Installs the handler for SIGTERM, SIGINT and SIGUSR1 (once, at start-up).
void stop_install_handlers(void);
// The signal that asked this process to stop, 0 if none.
int stop_requested(void);
// The signal's name ("SIGUSR1"...), for messages.
const char *stop_signal_name(int sig);
#endif
