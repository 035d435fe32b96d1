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

export async function openAdapter(): Promise<OpenedAdapter | string> {
  let webgpu: typeof import('webgpu');
  try {
    webgpu = await import('webgpu');
  } catch (err) {
    return `the webgpu package (Dawn) could not be loaded: ${err instanceof Error ? err.message : String(err)} (it is an optional dependency: npm install webgpu)`;
  }
  Object.assign(globalThis, webgpu.globals);
  for (const [flags, featureLevel, backend] of [
    [[], 'core', 'default backend'],
    [['backend=opengl'], 'compatibility', 'OpenGL'],
  ] as const) {
    const adapter = await webgpu.create([...flags]).requestAdapter({ featureLevel });
    if (adapter === null) continue;
    const info = adapter.info;
    return { adapter, name: [`Dawn ${backend}`, info.vendor, info.device, info.description].filter((s) => s !== '').join(' ') };
  }
  return 'Dawn found no adapter: no GPU through its default backend, and no OpenGL (Mesa llvmpipe: apt-get install libgl1-mesa-dri libegl-mesa0)';
}
