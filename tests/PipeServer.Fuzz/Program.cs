using PipeServer.Fuzz;
using SharpFuzz;

// Under afl-fuzz: one process serves many inputs (AFL's fork server protocol, implemented by SharpFuzz).
// With a path argument: replays one input (to reproduce a finding) and prints the outcome.
if (args.Length > 0)
{
    FuzzTargets.Run(File.ReadAllBytes(args[0]));
    Console.WriteLine("no failure");
    return;
}
Fuzzer.OutOfProcess.Run(stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    FuzzTargets.Run(ms.ToArray());
});
