import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The kernel layer of the disk grant: the guest's writable directory is an ext4 filesystem in an
 * image file of the granted size, loop-mounted over the directory. The runtime layer stops the
 * guest at exactly the grant (EDQUOT); this is the wall behind it (ENOSPC), which holds whatever
 * the runtime layer does.
 *
 * The image lives next to the directory and keeps the data across restarts and reboots; the mount
 * exists while the guest runs. A directory that already holds data and has no image is left as it
 * is (mounting over it would hide that data): the grant then has its runtime layer only.
 */
const MiB = 2 ** 20;

function tool(name: string): string | null {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

export function diskImageTools(): boolean {
  return ['mkfs.ext4', 'mount', 'umount', 'resize2fs', 'e2fsck'].every((t) => tool(t) !== null) && fs.existsSync('/dev/loop-control');
}

/** Image size for a grant: ext4 keeps ~3% and a few blocks for itself; the runtime quota is exact. */
export function imageBytes(grant: number): number {
  const bytes = Math.ceil(grant * 1.05) + MiB;
  return Math.ceil(bytes / 4096) * 4096;
}

/** The image file loop-mounted at `dir` (ext4), or null when something else (or nothing) is mounted there. */
export function mountedImage(dir: string): string | null {
  const target = path.resolve(dir).replace(/ /g, '\\040');
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      if (f[4] !== target) continue;
      const rest = f.slice(f.indexOf('-') + 1);
      const m = /^\/dev\/(loop\d+)$/.exec(rest[1] ?? '');
      if (rest[0] !== 'ext4' || m === null) return null;
      return fs.readFileSync(`/sys/block/${m[1]}/loop/backing_file`, 'utf8').trim();
    }
  } catch {
    return null; // no mountinfo or no such loop device: not our image
  }
  return null;
}

/** True when `dir` is a mount point. */
export function isMountPoint(dir: string): boolean {
  const target = path.resolve(dir);
  try {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[4] === target.replace(/ /g, '\\040'));
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[]): void {
  try {
    execFileSync(tool(cmd) ?? cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0] ?? String(err);
    throw new Error(`${cmd} ${args.join(' ')}: ${stderr}`);
  }
}

/** `run`, without holding the agent's thread while the tool works (mkfs.ext4 of a fresh image: ~0.1-0.5 s). */
function runAsync(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(tool(cmd) ?? cmd, args, { encoding: 'utf8' }, (err, _out, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim().split('\n')[0] || err.message}`));
    });
  });
}

/**
 * Mount the image at `dir`, making (or growing) it first. Returns the enforcement mechanism, or
 * throws with the reason the kernel layer cannot be used for this directory.
 */
export async function mountDiskImage(image: string, dir: string, grant: number): Promise<string> {
  const size = imageBytes(grant);
  if (isMountPoint(dir)) {
    // Only our own image counts as the kernel layer; any other mount there proves nothing.
    if (mountedImage(dir) !== fs.realpathSync(image)) throw new Error(`${dir} is a mount point of something other than its disk image ${image}`);
  } else {
    fs.mkdirSync(dir, { recursive: true });
    if (!fs.existsSync(image)) {
      if (fs.readdirSync(dir).length > 0) throw new Error(`${dir} already holds data and has no disk image; not mounting over it`);
      const tmp = `${image}.new`;
      fs.writeFileSync(tmp, '');
      fs.truncateSync(tmp, size);
      await runAsync('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'root_owner=0:0', tmp]);
      fs.renameSync(tmp, image);
    } else if (fs.statSync(image).size < size) {
      // A larger grant: grow the filesystem, keeping the data. (A smaller one keeps the image; the
      // runtime layer enforces the new grant exactly.)
      fs.truncateSync(image, size);
      await runAsync('e2fsck', ['-f', '-p', image]);
      await runAsync('resize2fs', [image]);
    }
    await runAsync('mount', ['-o', 'loop,nosuid,nodev,noexec', image, dir]);
    fs.rmSync(path.join(dir, 'lost+found'), { recursive: true, force: true });
  }
  return `ext4 image of ${fs.statSync(image).size} bytes loop-mounted at the directory (ENOSPC past it)`;
}

/** Unmount the guest's directory (after the guest is gone); the image keeps the data. */
export function unmountDiskImage(dir: string): void {
  if (!isMountPoint(dir)) return;
  try {
    run('umount', [dir]);
  } catch {
    // Still busy (a process of the guest is exiting): detach it now, it goes when unused.
    try {
      run('umount', ['-l', dir]);
    } catch {
      // not mounted any more
    }
  }
}

/**
 * Can this machine loop-mount an ext4 image? Tried once with a 2 MiB image in a temporary
 * directory (made, mounted, unmounted, removed). Null when it can, else the reason. Its tools run
 * synchronously (~0.1 s, more on a busy machine): the agent asks `probeDiskImagesAsync` as it
 * starts, and this only where something needs the answer before that one has it.
 */
export function probeDiskImages(): string | null {
  const t = probeTrial();
  if (typeof t === 'string') return t;
  try {
    for (const [cmd, args] of t.steps) run(cmd, args);
    const why = t.verdict();
    run(...t.unmount);
    return why;
  } catch (err) {
    return (err as Error).message;
  } finally {
    t.cleanUp();
  }
}

/** `probeDiskImages` with its tools run off the caller's thread; never rejects. */
export async function probeDiskImagesAsync(): Promise<string | null> {
  const t = probeTrial();
  if (typeof t === 'string') return t;
  try {
    for (const [cmd, args] of t.steps) await runAsync(cmd, args);
    const why = t.verdict();
    await runAsync(...t.unmount);
    return why;
  } catch (err) {
    return (err as Error).message;
  } finally {
    t.cleanUp();
  }
}

/**
 * The disk probe's trial: a 2 MiB image file in a fresh temporary directory, the commands that make
 * and mount it, what their outcome means, the command that unmounts it, and the clean-up (a mount
 * left by a failed step undone, the directory removed); or why there is no trial (no tools).
 */
function probeTrial(): { steps: [string, string[]][]; verdict(): string | null; unmount: [string, string[]]; cleanUp(): void } | string {
  if (!diskImageTools()) return 'needs mkfs.ext4, mount, umount, resize2fs, e2fsck and /dev/loop-control';
  let dir: string | null = null;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-probe-'));
    fs.mkdirSync(path.join(dir, 'mnt'));
    fs.writeFileSync(path.join(dir, 'probe.ext4'), '');
    fs.truncateSync(path.join(dir, 'probe.ext4'), 2 * MiB);
  } catch (err) {
    // A full or read-only temporary directory: an answer (no images), not a throw into `status`.
    if (dir !== null) fs.rm(dir, { recursive: true, force: true }, () => undefined);
    return `the test image could not be made: ${(err as Error).message}`;
  }
  const image = path.join(dir, 'probe.ext4');
  const mnt = path.join(dir, 'mnt');
  const made = dir;
  return {
    steps: [
      ['mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', image]],
      ['mount', ['-o', 'loop,nosuid,nodev,noexec', image, mnt]],
    ],
    verdict: () => (mountedImage(mnt) === fs.realpathSync(image) ? null : 'the test image did not show up as a loop mount'),
    unmount: ['umount', [mnt]],
    cleanUp() {
      if (isMountPoint(mnt)) unmountDiskImage(mnt);
      fs.rmSync(made, { recursive: true, force: true });
    },
  };
}
