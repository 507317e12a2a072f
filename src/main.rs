fn main() {
    println!("ringseed: under construction");
}
