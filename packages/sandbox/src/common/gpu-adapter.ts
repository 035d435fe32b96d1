import type { DawnModule, GPUAdapter } from './dawn.js';

/**
 * How lowcloud finds a WebGPU adapter through Dawn (the `webgpu` package, an optional dependency):
 * the machine's GPU through Dawn's default backend (Vulkan on Linux) first; where there is none,
 * Dawn's OpenGL backend over Mesa's llvmpipe, a software adapter (it needs EGL_PLATFORM=surfaceless,
 * set by whoever starts the process that loads Dawn). Used by the guest host's GPU device thread,
 * and by the host's probe (gpu-probe.ts) that names the adapter in the enforcement report.
 */
export interface OpenedAdapter {
  adapter: GPUAdapter;
  name: string;
}

/**
 * Every Dawn instance this thread made, held for the thread's life. The binding frees an instance
 * when its JavaScript object is collected, while its event polling (AsyncRunner) still calls
 * `InstanceBase::ProcessEvents` on it: a SIGSEGV in `pthread_mutex_lock` on the device thread,
 * whenever a collection came between (more often on Node.js 24, and in long submissions). An
 * adapter and its device do not keep their instance's object alive.
 */
const instances: object[] = [];

/** Not a literal in the import: TypeScript would then need the optional package's types (dawn.ts has the part used). */
const WEBGPU_PACKAGE = 'webgpu' as string;

export async function openAdapter(): Promise<OpenedAdapter | string> {
  let webgpu: DawnModule;
  try {
    webgpu = (await import(WEBGPU_PACKAGE)) as DawnModule;
  } catch (err) {
    return `the webgpu package (Dawn) could not be loaded: ${err instanceof Error ? err.message : String(err)} (it is an optional dependency: npm install webgpu)`;
  }
  Object.assign(globalThis, webgpu.globals);
  for (const [flags, featureLevel, backend] of [
    [[], 'core', 'default backend'],
    [['backend=opengl'], 'compatibility', 'OpenGL'],
  ] as const) {
    const instance = webgpu.create([...flags]);
    instances.push(instance);
    const adapter = await instance.requestAdapter({ featureLevel });
    if (adapter === null) continue;
    const info = adapter.info;
    return { adapter, name: [`Dawn ${backend}`, info.vendor, info.device, info.description].filter((s) => s !== '').join(' ') };
  }
  return 'Dawn found no adapter: no GPU through its default backend, and no OpenGL (Mesa llvmpipe: apt-get install libgl1-mesa-dri libegl-mesa0)';
}
