import type { Abstract, FactoryProvider, ValueProvider } from '@nestjs/common';

declare const valueType: unique symbol;

/**
 * The injection token of a value that is not a class instance (the environment, the logger, key
 * layouts). It carries the value's type, so the providers below are checked against it.
 */
export type ValueToken<T> = symbol & { readonly [valueType]?: T };

export function valueToken<T>(description: string): ValueToken<T> {
  return Symbol(description);
}

/** A class is its own token (`Abstract`: classes with private constructors too). */
export type Token<T> = ValueToken<T> | Abstract<T>;

/** The type of what `token` provides. */
type Provided<D> = D extends ValueToken<infer T> ? T : D extends { prototype: infer T } ? T : never;

export function provideValue<T>(token: Token<T>, value: T): ValueProvider<T> {
  return { provide: token, useValue: value };
}

/**
 * A factory provider whose factory receives what `inject` names, in order, each typed by its
 * token: a dependency added, dropped or reordered on one side only does not compile.
 */
export function provideFactory<T, const D extends readonly Token<unknown>[]>(
  token: Token<T>,
  inject: D,
  factory: (...dependencies: { [K in keyof D]: Provided<D[K]> }) => T | Promise<T>,
): FactoryProvider<T> {
  return { provide: token, inject: [...inject], useFactory: factory };
}
