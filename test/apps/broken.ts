// Deliberately does not compile.
const x: number = ;
