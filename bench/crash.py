#!/usr/bin/env python3
"""Crash figures (SPEC 16.1-16.3), the scenarios of Tests/DroverFaultTests/CrashTests.swift
with larger counts. Each task appends its id to a side log outside drover's folders, so the
log tells how many times each one really ran.

  daemon: raw tasks launched on the control socket (3 launchers) into `drover serve`, which
          is SIGKILLed 50-500 ms into each round and started again; then every task ends.
  batch:  `drover run` of a manifest SIGKILLed at random moments and rerun with --resume,
          then run to completion.

Usage: crash.py DROVER WORK daemon TASKS KILLS SEED
       crash.py DROVER WORK batch ROWS KILLS SEED
"""
import collections, json, os, random, signal, socket, struct, subprocess, sys, threading, time

drover, work, scenario, count, kills, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rng = random.Random(seed)
TERMINAL = {"completed", "error", "cancelled"}
DEADLINE = time.monotonic() + float(os.environ.get("CRASH_TIME_LIMIT", "900"))
children = []  # every process started here, killed and reaped at the end whatever happens


def bounded(what):
    if time.monotonic() > DEADLINE:
        raise SystemExit(f"crash.py: time limit reached during {what}")


def start(argv, log):
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    children.append(child)
    return child


def call(state, frame, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.path.join(state, "drover.sock"))
        data = json.dumps(frame).encode()
        s.sendall(struct.pack(">I", len(data)) + data)
        header = s.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            raise ConnectionError("closed without an answer")
        (n,) = struct.unpack(">I", header)
        payload = s.recv(n, socket.MSG_WAITALL)
        if len(payload) < n:
            raise ConnectionError("closed inside the answer")
        return json.loads(payload)
    finally:
        s.close()


def read_lines(path):
    """JSON objects of a JSON-lines file, and how many lines are cut or do not parse."""
    if not os.path.exists(path):
        return [], 0
    data = open(path, "rb").read()
    bad = 0 if not data or data.endswith(b"\n") else 1
    objects = []
    for line in data.split(b"\n")[:-1]:  # the last piece is empty, or a cut line
        try:
            objects.append(json.loads(line))
        except ValueError:
            bad += 1
    return objects, bad


def side_counts(path):
    return collections.Counter(open(path).read().split()) if os.path.exists(path) else collections.Counter()


def task_files(root):
    tasks = {}
    for task_id in os.listdir(os.path.join(root, "tasks")):
        path = os.path.join(root, "tasks", task_id, "task.json")
        tasks[task_id] = json.load(open(path)) if os.path.exists(path) else None
    return tasks


def journal(root):
    lines, bad = read_lines(os.path.join(root, "events.jsonl"))
    by_task = collections.OrderedDict()
    for line in lines:
        by_task.setdefault(line["task_id"], []).append(line)
    return by_task, bad


def whole_files(root):
    """Cut or unparsable lines of every JSON-lines file, and the *.tmp files left."""
    bad, tmp = 0, 0
    for folder, _, names in os.walk(root):
        for name in names:
            tmp += name.endswith(".tmp")
            if name.endswith(".jsonl"):
                bad += read_lines(os.path.join(folder, name))[1]
    return bad, tmp


def ends(tasks, by_task):
    """Tasks with more than one terminal line, with none, and whose end disagrees with task.json."""
    double, missing, disagree, open_files = 0, 0, 0, 0
    for task_id in set(by_task) | {t for t, r in tasks.items() if r}:
        record = tasks.get(task_id)
        lines = by_task.get(task_id, [])
        terminal = [l for l in lines if l["status"] in TERMINAL]
        if record is None or record["status"] not in TERMINAL:
            open_files += 1
            continue
        double += len(terminal) > 1
        missing += not terminal
        if terminal and (terminal[-1]["status"], terminal[-1]["reason"]) != (record["status"], record["reason"]):
            disagree += 1
        elif terminal and lines[-1]["status"] not in TERMINAL:
            disagree += 1
    return double, missing, disagree, open_files


def leftovers(task_ids, pids):
    """Live processes of these tasks (by DROVER_TASK_ID) or among these pids, after up to 5 s."""
    for _ in range(50):
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                state = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[0]
                if state in "ZX":
                    continue
                if int(name) in pids:
                    found.append(int(name))
                    continue
                for variable in open(f"/proc/{name}/environ", "rb").read().split(b"\0"):
                    if variable.startswith(b"DROVER_TASK_ID=") and variable[15:].decode() in task_ids:
                        found.append(int(name))
            except (OSError, IndexError):
                pass
        if not found:
            return []
        time.sleep(0.1)
    return found


def wardens_of(pid):
    found = []
    for name in os.listdir("/proc"):
        try:
            text = open(f"/proc/{name}/stat").read()
            if "(drover-warden)" in text and int(text.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def kill_and_reap(child):
    """SIGKILL; True when it was still running (a real kill), False when it had exited."""
    running = child.poll() is None
    if running:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return running and child.returncode == -signal.SIGKILL


# ---------------------------------------------------------------------------------------------

def daemon_scenario():
    state, side = os.path.join(work, "state"), os.path.join(work, "daemon-side.log")
    config = os.path.join(work, "daemon.jsonc")
    os.makedirs(state, mode=0o700)
    with open(config, "w") as f:
        json.dump({"background_task": {"providerConcurrency": {"local": 3}},
                   "agents": {"sh": {"command": ["/bin/sh", "-c", "{prompt}"], "protocol": "raw", "provider": "local"}}}, f)
    prompt = f"echo $DROVER_TASK_ID >> {side}"
    acknowledged, refused, unexpected, wardens = [], [0], [], []
    lock = threading.Lock()
    started = time.monotonic()

    def launcher(quota, interval):
        for _ in range(quota):
            try:
                answer = call(state, {"type": "launch", "agent": "sh", "prompt": prompt})
            except OSError:
                with lock:
                    refused[0] += 1
                return
            with lock:
                (acknowledged.append(answer["task_id"]) if answer.get("type") == "ok" else unexpected.append(answer))
            time.sleep(interval)

    for round_number in range(kills):
        bounded("the daemon's rounds")
        daemon = start([drover, "serve", "--state-dir", state, "--config", config], os.path.join(work, f"serve-{round_number}.log"))
        for _ in range(1000):
            try:
                if call(state, {"type": "ping"}, timeout=1).get("pid") == daemon.pid:
                    break
            except OSError:
                time.sleep(0.01)
        else:
            raise SystemExit(f"the daemon of round {round_number} did not answer")
        # The tasks left to launch are spread over this round's launchers until the kill.
        kill_after = rng.uniform(0.05, 0.5)
        quota = (count - len(acknowledged)) // (kills - round_number)
        threads = [threading.Thread(target=launcher, args=(quota // 3 + (i < quota % 3), 3 * kill_after / max(quota, 1)))
                   for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(kill_after)
        wardens += wardens_of(daemon.pid)
        if not kill_and_reap(daemon):
            raise SystemExit(f"the daemon of round {round_number} exited by itself: {open(os.path.join(work, f'serve-{round_number}.log')).read()[-2000:]}")
        for t in threads:
            t.join(10)
    # The next command starts a new daemon, which recovers the folder; the launches the kills
    # cut short are made up, then every task ends.
    subprocess.run([drover, "status", "--state-dir", state, "--config", config], stdout=subprocess.DEVNULL, check=True, timeout=60)
    launcher(count - len(acknowledged), 0)
    waited = subprocess.run([drover, "wait", "--all", "--timeout", "10m", "--state-dir", state, "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=660)
    seconds = time.monotonic() - started
    tasks, (by_task, bad_journal) = task_files(state), journal(state)
    side_log = side_counts(side)
    double, missing, disagree, open_files = ends(tasks, by_task)
    bad_lines, tmp = whole_files(state)
    lost_acks = [t for t in acknowledged if not tasks.get(t)]
    records = {t: r for t, r in tasks.items() if r}
    completed_not_once = [t for t, r in records.items() if r["status"] == "completed" and side_log[t] != 1]
    other_ends = collections.Counter(f"{r['status']}({r['reason']})" for r in records.values()
                                     if (r["status"], r["reason"]) not in {("completed", "exit"), ("error", "lost")})
    # A kill between a launch's task.json and its pending line leaves a journal that starts later.
    no_pending = sum(1 for lines in by_task.values() if lines[0]["status"] != "pending")
    left = leftovers(set(tasks), set(wardens))
    subprocess.run([drover, "shutdown", "--no-autostart", "--state-dir", state], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    print(f"daemon (seed {seed}): {len(records)} tasks, {kills} kills, {len(acknowledged)} acknowledged launches "
          f"({len(set(records) - set(acknowledged))} more recorded without an answer, {refused[0]} refused as the daemon died, "
          f"{len(unexpected)} refused otherwise); wait --all exited {waited.returncode}; {seconds:.1f} s in all")
    print(f"  duplicates (an id twice in the side log): {sum(1 for n in side_log.values() if n > 1)}")
    print(f"  double ends: {double}   missing ends: {missing}   ends disagreeing with task.json: {disagree}   task.json not terminal: {open_files}")
    print(f"  lost acknowledged launches: {len(lost_acks)}")
    print(f"  tasks ended lost: {sum(1 for r in records.values() if r['reason'] == 'lost')}   completed: "
          f"{sum(1 for r in records.values() if r['status'] == 'completed')}   completed but not once in the side log: {len(completed_not_once)}"
          + (f"   other ends: {dict(other_ends)}" if other_ends else ""))
    print(f"  cut or unparsable JSON lines: {bad_lines + bad_journal}   *.tmp left: {tmp}   processes left: {len(left)}   "
          f"journals without their pending line: {no_pending}")


def batch_scenario():
    results, side = os.path.join(work, "results"), os.path.join(work, "batch-side.log")
    manifest, config = os.path.join(work, "tasks.jsonl"), os.path.join(work, "batch.jsonc")
    with open(manifest, "w") as f:
        f.write((json.dumps({"command": ["/bin/sh", "-c", f"echo $DROVER_TASK_ID >> {side}"]}) + "\n") * count)
    with open(config, "w") as f:
        json.dump({"background_task": {"providerConcurrency": {"local": 3}}}, f)
    argv = [drover, "run", manifest, "--results", results, "--config", config]
    done_at_kills, running_at_kill, wardens, real_kills, runs = [], {}, [], 0, 0
    started = time.monotonic()
    # Random moments across the run: when the side log reaches each of these rows, plus up to
    # 3 ms (a run that starts past its point is killed as it starts).
    kill_points = sorted(rng.randrange(count * 9 // 10) for _ in range(kills))
    while real_kills < kills:
        bounded("the batch's kills")
        run = start(argv + (["--resume"] if runs else []), os.path.join(work, f"run-{runs}.log"))
        runs += 1
        target = kill_points[real_kills]
        while sum(side_counts(side).values()) < target and run.poll() is None:
            bounded("waiting for a kill moment")
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.003))
        wardens += wardens_of(run.pid)
        if not kill_and_reap(run):
            break  # it finished first: nothing is left to resume
        real_kills += 1
        done_at_kills.append(sum(side_counts(side).values()))
        # Running: started by the journal, and no terminal task.json (one whose end is on disk
        # but not yet in the journal had ended).
        by_task, _ = journal(results)
        records = task_files(results)
        for task_id, lines in by_task.items():
            if lines[-1]["status"] == "running" and not (records.get(task_id) or {}).get("status") in TERMINAL:
                running_at_kill.setdefault(task_id, real_kills)
        for task_id, record in records.items():
            if record and record["status"] == "running":
                running_at_kill.setdefault(task_id, real_kills)
    last = subprocess.run(argv + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=max(60, DEADLINE - time.monotonic()))
    seconds = time.monotonic() - started
    tasks, (by_task, bad_journal) = task_files(results), journal(results)
    side_log = side_counts(side)
    double, missing, disagree, open_files = ends(tasks, by_task)
    bad_lines, tmp = whole_files(results)
    tasks_of_line = collections.defaultdict(list)
    for task_id, lines in by_task.items():
        tasks_of_line[lines[0].get("manifest_line")].append(task_id)
    records = {t: r for t, r in tasks.items() if r}
    run_again = [l for l, ids in tasks_of_line.items() if len(ids) > 1]
    ran_twice = [l for l, ids in tasks_of_line.items() if sum(side_log[t] for t in ids) > 1]
    not_lost = [t for t in running_at_kill if not records.get(t) or (records[t]["status"], records[t]["reason"]) != ("error", "lost")]
    summary = json.load(open(os.path.join(results, "summary.json")))
    final = {}
    for line, ids in tasks_of_line.items():
        final[line] = records.get(ids[-1], {}).get("status")
    by_status = collections.Counter(final.values())
    counts_agree = (summary["total"] == count and len(summary["tasks"]) == count
                    and all(summary["counts"][s] == by_status.get(s, 0) for s in ("completed", "error", "cancelled")))
    left = leftovers(set(tasks), set(wardens))
    print(f"batch (seed {seed}): {count} rows, {real_kills} kills ({runs + 1} runs; rows done at each kill: {done_at_kills}), "
          f"{len(records)} tasks; the last run exited {last.returncode} after {seconds:.1f} s in all")
    print(f"  duplicates (an id twice in the side log): {sum(1 for n in side_log.values() if n > 1)}   "
          f"rows run again as a new task: {len(run_again)}   rows whose command ran more than once: {len(ran_twice)}")
    print(f"  double ends: {double}   missing ends: {missing}   ends disagreeing with task.json: {disagree}   task.json not terminal: {open_files}")
    print(f"  rows missing from the journal: {count - len([l for l in tasks_of_line if l])}   tasks ended lost: "
          f"{sum(1 for r in records.values() if r['reason'] == 'lost')}   running at a kill: {len(running_at_kill)}, "
          f"of which not ended lost: {len(not_lost)}")
    print(f"  summary.json: total {summary['total']}, counts {summary['counts']}, rows' final tasks {dict(by_status)}: "
          f"{'agree' if counts_agree else 'DISAGREE'}")
    print(f"  cut or unparsable JSON lines: {bad_lines + bad_journal}   *.tmp left: {tmp}   processes left: {len(left)}")


# `timeout` ends a run that overstays with SIGTERM: the children are still cleaned up.
signal.signal(signal.SIGTERM, lambda *_: sys.exit("crash.py: terminated"))
try:
    daemon_scenario() if scenario == "daemon" else batch_scenario()
finally:
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
